import { randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { escapeHtml } from '../../../shared/http/responses.ts';
import { SandboxTokens } from './signed-tokens.ts';

/** A misbehaviour to inject into a sandbox provider's token endpoints (tests, demos). */
export type SandboxFault =
  | { type: 'status'; status: number; body?: string }
  | { type: 'delay'; ms: number }
  | { type: 'garbage' };

export interface SandboxRequest {
  method: string;
  /** Path below the provider's sandbox base, e.g. "/oauth/token". */
  path: string;
  /** The query string's parameters. */
  query: URLSearchParams;
  /** Public URL of this provider's sandbox base, e.g. http://localhost:3000/sandbox/quipt. */
  baseUrl: string;
  headers: IncomingMessage['headers'];
  body: string;
}

export interface SandboxAnswer {
  status: number;
  body: unknown;
}

/** What every sandbox provider shares: clock, clients, signed tokens, call counts, faults. */
export class SandboxProviderBase {
  readonly calls = new Map<string, number>();
  fault: SandboxFault | undefined;
  protected readonly tokens: SandboxTokens;

  constructor(
    readonly kind: string,
    /** client_id → client_secret of the clients this sandbox accepts. */
    readonly clients: Map<string, string>,
    signingKey: Buffer,
    protected readonly now: () => number,
  ) {
    this.tokens = new SandboxTokens(signingKey, `sbx_${kind}`);
  }

  count(endpoint: string): void {
    this.calls.set(endpoint, (this.calls.get(endpoint) ?? 0) + 1);
  }

  callCount(endpoint?: string): number {
    if (endpoint) return this.calls.get(endpoint) ?? 0;
    return [...this.calls.values()].reduce((a, b) => a + b, 0);
  }

  /** Applies an injected fault; returns the answer to send instead, if any. */
  protected async applyFault(res: ServerResponse): Promise<boolean> {
    const fault = this.fault;
    if (!fault) return false;
    if (fault.type === 'delay') {
      await sleep(fault.ms);
      return false;
    }
    if (fault.type === 'garbage') {
      res.writeHead(200, { 'content-type': 'application/json' }).end('<html>not json');
      return true;
    }
    res.writeHead(fault.status, { 'content-type': 'application/json' }).end(fault.body ?? '{}');
    return true;
  }

  protected clientAccepted(clientId: unknown, clientSecret: unknown): clientId is string {
    return (
      typeof clientId === 'string' &&
      typeof clientSecret === 'string' &&
      this.clients.get(clientId) === clientSecret
    );
  }

  protected bearer(headers: IncomingMessage['headers']): string | undefined {
    const match = /^Bearer (.+)$/i.exec(headers.authorization ?? '');
    return match?.[1];
  }
}

export function parseBody(request: SandboxRequest): Record<string, unknown> {
  const type = request.headers['content-type'] ?? '';
  if (type.includes('application/x-www-form-urlencoded')) {
    return Object.fromEntries(new URLSearchParams(request.body));
  }
  try {
    const parsed: unknown = JSON.parse(request.body || '{}');
    return typeof parsed === 'object' && parsed !== null ? (parsed as Record<string, unknown>) : {};
  } catch {
    return {};
  }
}

export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  res
    .writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' })
    .end(JSON.stringify(body));
}

/** Each sandbox's colour, so a person can tell at a glance whose page they are on. */
const brandColours: Record<string, string> = {
  quicko: '#e8590c',
  quipt: '#0c8599',
};

/**
 * A sandbox provider's HTML page (consent, OTP, authorize): plain forms, no script, one inline
 * style by nonce, never framed. An error page links back to the local broker's landing page,
 * which is on the same origin offline.
 */
export function sendPage(
  res: ServerResponse,
  status: number,
  title: string,
  body: string,
  kind = 'sandbox',
): void {
  const nonce = randomBytes(16).toString('base64');
  const brand = kind.charAt(0).toUpperCase() + kind.slice(1);
  const colour = brandColours[kind] ?? '#495057';
  const back =
    status >= 400 ? '<p class="back"><a href="/">← Back to the local broker</a></p>' : '';
  res
    .writeHead(status, {
      'content-type': 'text/html; charset=utf-8',
      'cache-control': 'no-store',
      'referrer-policy': 'no-referrer',
      'x-content-type-options': 'nosniff',
      'x-frame-options': 'DENY',
      'content-security-policy': `default-src 'none'; style-src 'nonce-${nonce}'; frame-ancestors 'none'`,
    })
    .end(
      `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">` +
        `<title>${escapeHtml(title)}</title><style nonce="${nonce}">
body{font:16px/1.5 system-ui,sans-serif;color:#1d2330;background:#f1f3f5;margin:0}
header{background:${colour};color:#fff;padding:.8rem 1.5rem;font-weight:700;letter-spacing:.02em}
header span{font-weight:400;opacity:.85;margin-left:.5rem}
main{background:#fff;max-width:26rem;margin:3rem auto;padding:1.5rem 2rem 2rem;border-radius:10px;box-shadow:0 2px 12px rgba(0,0,0,.08)}
h1{font-size:1.35rem;margin:.2rem 0 1rem}code{background:#f1f3f5;padding:.1rem .3rem;border-radius:3px}
label{display:block;margin:1rem 0 .3rem;font-weight:600}
input{font:inherit;font-size:1.2rem;letter-spacing:.2em;padding:.4rem .6rem;width:10rem;border:1px solid #ced4da;border-radius:6px}
button{font:inherit;padding:.45rem 1.2rem;margin:1rem .5rem 0 0;border-radius:6px;border:1px solid #ced4da;background:#fff;cursor:pointer}
button[type=submit]:first-of-type,button[value=allow]{background:${colour};border-color:${colour};color:#fff}
#otp{font-family:ui-monospace,monospace;font-size:1.1rem;background:#fff3bf;padding:.1rem .4rem;border-radius:4px}
.back{margin-top:1.5rem}
</style></head>` +
        `<body><header>${escapeHtml(brand)}<span>sandbox</span></header><main><h1>${escapeHtml(title)}</h1>${body}${back}</main></body></html>`,
    );
}

export { escapeHtml };
