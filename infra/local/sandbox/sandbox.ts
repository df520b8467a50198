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

/** A sandbox provider's HTML page (consent, OTP, authorize): plain forms, no script. */
export function sendPage(res: ServerResponse, status: number, title: string, body: string): void {
  res
    .writeHead(status, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' })
    .end(
      `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${escapeHtml(title)}</title></head>` +
        `<body><h1>${escapeHtml(title)}</h1>${body}</body></html>`,
    );
}

export { escapeHtml };
