import { randomBytes } from 'node:crypto';
import type { ServerResponse } from 'node:http';
import type { Broker } from '../../shared/broker.ts';
import { toPublicError } from '../../shared/errors.ts';
import type { LifecycleEvent } from '../../shared/events.ts';
import { escapeHtml } from '../../shared/http/responses.ts';
import type { ConnectionSummary } from '../../shared/store/connection-directory.ts';

export interface LandingRequest {
  method: string;
  /** The request's URL on the runtime's own origin. */
  url: URL;
  body: string;
  origin: string | undefined;
  /** The origin the browser sees this page at (localhost, 127.0.0.1, publicBaseUrl, …). */
  pageOrigin: string;
}

export interface LandingContext {
  broker: Broker;
  now: () => number;
  /** The latest lifecycle events, newest first. */
  events: () => readonly LifecycleEvent[];
}

/** How often the open page reloads its live section (connections and events). */
const liveRefreshMs = 3000;

/**
 * Headers of every landing-page answer, as the connect pages have them: never cached, never
 * framed (a framed page could be click-jacked onto Disconnect), no sniffing. Two differences, for
 * the page's own forms and script: the CSP allows a style and a script by nonce, and the Referer
 * is kept within the origin (`same-origin`), because under `no-referrer` browsers send
 * `Origin: null` with a form POST, and the POST routes check that Origin. No Referer ever leaves.
 * No `form-action`: Chromium applies it to the redirects after a submit, and Connect redirects
 * to the provider's consent page, wherever that is.
 */
function landingHeaders(nonce?: string): Record<string, string> {
  return {
    'cache-control': 'no-store',
    'referrer-policy': 'same-origin',
    'x-content-type-options': 'nosniff',
    'x-frame-options': 'DENY',
    'content-security-policy': [
      "default-src 'none'",
      ...(nonce ? [`style-src 'nonce-${nonce}'`, `script-src 'nonce-${nonce}'`] : []),
      "connect-src 'self'",
      "base-uri 'none'",
      "frame-ancestors 'none'",
    ].join('; '),
  };
}

/**
 * The offline runtime's landing page: the configured providers with a Connect button, the
 * connections with their status and times, and the latest lifecycle events, the last two
 * reloaded while the page is open. Local only: in AWS the team's own backend creates connect
 * sessions through the `connections` function. Returns false when the request is not for it.
 *
 * Routes: `GET /`, `GET /local/live` (the live section alone), `GET /local/disconnect` (asks
 * first), `POST /local/connect`, `POST /local/disconnect`.
 */
export async function serveLandingPage(
  context: LandingContext,
  request: LandingRequest,
  res: ServerResponse,
): Promise<boolean> {
  const { method, url } = request;
  const path = url.pathname;
  if (method === 'GET' && path === '/') {
    const nonce = randomBytes(16).toString('base64');
    sendHtml(res, 200, nonce, await renderLandingPage(context, url, nonce));
    return true;
  }
  if (method === 'GET' && path === '/local/live') {
    sendHtml(res, 200, undefined, await renderLive(context));
    return true;
  }
  if (method === 'GET' && path === '/local/disconnect') {
    const nonce = randomBytes(16).toString('base64');
    const provider = url.searchParams.get('provider') ?? '';
    const connectionId = url.searchParams.get('connectionId') ?? '';
    const consent = hasConsentFlowFor(context.broker, provider);
    sendHtml(res, 200, nonce, renderDisconnectConfirmation(provider, connectionId, consent, nonce));
    return true;
  }
  if (method !== 'POST' || (path !== '/local/connect' && path !== '/local/disconnect')) {
    return false;
  }
  // Only this page's own forms: a browser sends Origin with every form POST, so a missing one is
  // a request from elsewhere (or a script that can call the connections function anyway).
  if (request.origin !== request.pageOrigin) {
    const nonce = randomBytes(16).toString('base64');
    const reason =
      request.origin === undefined
        ? 'This form POST has no Origin header.'
        : 'This form POST comes from another site.';
    sendHtml(
      res,
      403,
      nonce,
      errorPage('Form refused', `${reason} Use the forms on the landing page.`, nonce),
    );
    return true;
  }
  const form = new URLSearchParams(request.body);
  const provider = form.get('provider') ?? '';
  const connectionId = form.get('connectionId') ?? '';
  try {
    if (path === '/local/connect') {
      const session = await context.broker.connect.createConnectSession({
        provider,
        connectionId,
        returnTo: `${url.origin}/`,
      });
      // The location carries the session: the redirect is no-store like everything here.
      res.writeHead(303, { ...landingHeaders(), location: session.url }).end();
    } else {
      await context.broker.connections.handle({ action: 'delete', provider, connectionId });
      const back = new URL('/', url);
      back.searchParams.set('status', 'disconnected');
      back.searchParams.set('provider', provider);
      back.searchParams.set('connection_id', connectionId);
      res.writeHead(303, { ...landingHeaders(), location: back.toString() }).end();
    }
  } catch (error) {
    const { code, message } = toPublicError(error);
    const back = new URL('/', url);
    back.searchParams.set('status', 'error');
    back.searchParams.set('error', code);
    back.searchParams.set('provider', provider);
    back.searchParams.set('connection_id', connectionId);
    back.searchParams.set('message', message);
    res.writeHead(303, { ...landingHeaders(), location: back.toString() }).end();
  }
  return true;
}

/** A person connected it (consent, or the api_key / basic form): only they can connect it again. */
function hasConsentFlowFor(broker: Broker, providerId: string): boolean {
  const provider = broker.providers.get(providerId);
  return provider !== undefined && provider.kind.variant !== 'client-credentials';
}

/** A refusal page of the offline runtime (bad Host, a refused form, not found): with a way back. */
export function sendLocalErrorPage(
  res: ServerResponse,
  status: number,
  title: string,
  message: string,
  home = '/',
): void {
  const nonce = randomBytes(16).toString('base64');
  sendHtml(res, status, nonce, errorPage(title, message, nonce, home));
}

function sendHtml(
  res: ServerResponse,
  status: number,
  nonce: string | undefined,
  html: string,
): void {
  res
    .writeHead(status, { ...landingHeaders(nonce), 'content-type': 'text/html; charset=utf-8' })
    .end(html);
}

/** "in 4 min", "2 h ago", "now": how far `at` is from `now`, roughly, as a person says it. */
export function relativeTime(at: number, now: number): string {
  const seconds = Math.round((at - now) / 1000);
  const size = Math.abs(seconds);
  if (size < 5) return 'now';
  const [value, unit] =
    size < 60
      ? [size, 's']
      : size < 3600
        ? [Math.round(size / 60), 'min']
        : size < 48 * 3600
          ? [Math.round(size / 3600), 'h']
          : [Math.round(size / 86_400), 'd'];
  return seconds > 0 ? `in ${value} ${unit}` : `${value} ${unit} ago`;
}

/** A time as a person reads it, with the exact instant in `datetime` and on hover. */
function timeHtml(iso: string, now: number, words = relativeTime(Date.parse(iso), now)): string {
  return `<time datetime="${escapeHtml(iso)}" title="${escapeHtml(iso)}">${escapeHtml(words)}</time>`;
}

function expiryHtml(iso: string | null, now: number): string {
  if (iso === null) return 'never';
  const at = Date.parse(iso);
  return at <= now ? timeHtml(iso, now, `expired ${relativeTime(at, now)}`) : timeHtml(iso, now);
}

/** When the refresher renews it next; never a time in the past. */
function nextRefreshHtml(c: ConnectionSummary, now: number): string {
  if (c.nextRefreshAt === null) {
    return c.status === 'needs_reauth' ? 'needs a new consent' : 'not needed';
  }
  // Due already: the next refresher run (every minute offline) renews it.
  if (Date.parse(c.nextRefreshAt) <= now) return timeHtml(c.nextRefreshAt, now, 'due now');
  return timeHtml(c.nextRefreshAt, now);
}

/** What went wrong, in words, for the codes a connect flow comes back with. */
const errorWords: Record<string, string> = {
  access_denied: 'consent was cancelled at the provider',
  provider_rejected: 'the provider refused the request',
  provider_unavailable: 'the provider is not answering; try again',
  needs_reauth: 'the connection needs a new consent',
  invalid_request: 'the request was not valid',
  unknown_provider: 'no such provider is configured',
  not_found: 'no such connection',
  internal_error: 'the broker failed (its log says why)',
};

function bannerHtml(query: URLSearchParams): string {
  const status = query.get('status');
  if (!status) return '';
  const provider = query.get('provider') || 'the provider';
  const who = `${provider}${query.get('connection_id') ? ` / ${query.get('connection_id')}` : ''}`;
  if (status === 'connected') {
    return `<p class="banner ok" role="status">${escapeHtml(`Connected ${who}.`)}</p>`;
  }
  if (status === 'disconnected') {
    return `<p class="banner ok" role="status">${escapeHtml(`Disconnected ${who}: its tokens are deleted.`)}</p>`;
  }
  const code = query.get('error') ?? 'error';
  const words = query.get('message') || errorWords[code] || 'it did not work';
  return `<p class="banner bad" role="alert">${escapeHtml(`Could not connect ${who}: ${words}`)} <code>${escapeHtml(code)}</code></p>`;
}

async function listConnections(broker: Broker): Promise<ConnectionSummary[]> {
  const connections: ConnectionSummary[] = [];
  for (const provider of broker.providers.values()) {
    let cursor: string | undefined;
    do {
      const page = await broker.connections.handle({
        action: 'list',
        provider: provider.id,
        ...(cursor ? { cursor } : {}),
      });
      if (!('connections' in page)) break;
      connections.push(...page.connections);
      cursor = page.nextCursor;
    } while (cursor);
  }
  return connections;
}

/** The part of the page that changes on its own: connections and events. */
async function renderLive(context: LandingContext): Promise<string> {
  const now = context.now();
  const connections = await listConnections(context.broker);
  const events = context.events().slice(0, 20);
  const connectionRows =
    connections.length === 0
      ? '<tr><td colspan="7" class="muted">No connections yet.</td></tr>'
      : connections
          .map((c) => {
            const confirm = new URLSearchParams({
              provider: c.provider,
              connectionId: c.connectionId,
            });
            return `<tr data-connection="${escapeHtml(`${c.provider}/${c.connectionId}`)}"><td>${escapeHtml(c.provider)}</td><td>${escapeHtml(c.connectionId)}</td>
<td><span class="pill status-${escapeHtml(c.status)}">${escapeHtml(c.status)}</span></td>
<td>${expiryHtml(c.accessTokenExpiresAt, now)}</td>
<td>${c.lastRefreshedAt ? timeHtml(c.lastRefreshedAt, now) : '<span class="muted">not yet</span>'}</td>
<td class="next-refresh">${nextRefreshHtml(c, now)}</td>
<td>${c.lastError ? `<span class="error">${escapeHtml(`${c.lastError.code}: ${c.lastError.message}`)}</span> ${timeHtml(c.lastError.at, now)}` : ''}</td>
<td><a class="button danger" href="/local/disconnect?${escapeHtml(confirm.toString())}">Disconnect</a></td></tr>`;
          })
          .join('\n');
  const eventRows =
    events.length === 0
      ? '<li class="muted">None yet.</li>'
      : events
          .map(
            (e) =>
              `<li>${timeHtml(new Date(e.at).toISOString(), now)} <b>${escapeHtml(e.type)}</b> ${escapeHtml(
                `${e.provider} / ${e.connectionId} (${e.status})${e.reason ? `: ${e.reason}` : ''}`,
              )}</li>`,
          )
          .join('\n');
  return `<h2>Connections</h2>
<table id="connections"><thead><tr><th>provider</th><th>connection</th><th>status</th><th>access token expires</th><th>last refresh</th><th>next refresh</th><th>last error</th><th></th></tr></thead><tbody>
${connectionRows}
</tbody></table>
<h2>Lifecycle events</h2>
<ul id="events">
${eventRows}
</ul>`;
}

async function renderLandingPage(
  context: LandingContext,
  url: URL,
  nonce: string,
): Promise<string> {
  const { origin, searchParams: query } = url;
  const providerRows = [...context.broker.providers.values()]
    .map((provider) => {
      const id = escapeHtml(provider.id);
      // Consent at the provider, or (api_key / basic) the hosted credentials form.
      const action =
        provider.kind.variant !== 'client-credentials'
          ? `<form method="post" action="/local/connect">
<input type="hidden" name="provider" value="${id}">
<input name="connectionId" value="demo-user" aria-label="connection id for ${id}" required>
<button type="submit" id="connect-${id}">Connect</button></form>`
          : '<span class="muted">client credentials: tokens on demand, no consent</span>';
      return `<tr><td>${id}</td><td>${escapeHtml(provider.kind.kind)}</td><td>${action}</td></tr>`;
    })
    .join('\n');
  return shell(
    'oauth-token-broker (local)',
    nonce,
    `<h1>oauth-token-broker <span class="muted">local</span></h1>
${bannerHtml(query)}
<h2>Providers</h2>
<table id="providers"><thead><tr><th>id</th><th>kind</th><th></th></tr></thead><tbody>
${providerRows}
</tbody></table>
<section id="live" aria-live="polite">
${await renderLive(context)}
</section>
<p class="muted">Fetch a token: <code>curl -s ${escapeHtml(origin)}/2015-03-31/functions/token/invocations -d '{"provider":"…","connectionId":"…"}'</code></p>
<script nonce="${nonce}">
// Reloads the connections and events while the page is open and visible.
const live = document.getElementById('live');
setInterval(async () => {
  if (document.hidden) return;
  try {
    const answer = await fetch('/local/live', { cache: 'no-store' });
    if (answer.ok) live.innerHTML = await answer.text();
  } catch {
    // The runtime is restarting: try again on the next tick.
  }
}, ${liveRefreshMs});
</script>`,
  );
}

function renderDisconnectConfirmation(
  provider: string,
  connectionId: string,
  consent: boolean,
  nonce: string,
): string {
  const after = consent
    ? 'a service asking for them gets <code>not_found</code> until the user connects again'
    : 'the next token fetch mints new ones with the client credentials';
  return shell(
    'Disconnect?',
    nonce,
    `<div class="card"><h1>Disconnect ${escapeHtml(provider)} / ${escapeHtml(connectionId)}?</h1>
<p>Its tokens are deleted; ${after}.</p>
<form method="post" action="/local/disconnect">
<input type="hidden" name="provider" value="${escapeHtml(provider)}">
<input type="hidden" name="connectionId" value="${escapeHtml(connectionId)}">
<button type="submit" class="danger" id="confirm-disconnect">Disconnect</button>
<a class="button" href="/" id="cancel-disconnect">Cancel</a></form></div>`,
  );
}

function errorPage(title: string, message: string, nonce: string, home = '/'): string {
  return shell(
    title,
    nonce,
    `<div class="card"><h1>${escapeHtml(title)}</h1><p>${escapeHtml(message)}</p>
<p><a href="${escapeHtml(home)}">← Back to the local broker</a></p></div>`,
  );
}

function shell(title: string, nonce: string, body: string): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>${escapeHtml(title)}</title>
<style nonce="${nonce}">
:root{--fg:#1d2330;--muted:#6b7280;--line:#e5e7eb;--accent:#2f5bd3;--bad:#b42318;--ok:#17703a}
body{font:15px/1.5 system-ui,sans-serif;color:var(--fg);background:#f7f8fa;max-width:72rem;margin:2rem auto;padding:0 1rem}
h1{font-size:1.6rem;margin:0 0 1rem}h2{font-size:1.1rem;margin:2rem 0 .5rem}
table{border-collapse:collapse;width:100%;background:#fff;border:1px solid var(--line);border-radius:6px}
td,th{border-bottom:1px solid var(--line);padding:.5rem .6rem;text-align:left;vertical-align:middle}
th{font-size:.8rem;text-transform:uppercase;letter-spacing:.03em;color:var(--muted);font-weight:600}
tr:last-child td{border-bottom:0}
.muted{color:var(--muted)}code{font-size:.85em;background:#eef0f4;padding:.1rem .3rem;border-radius:3px}
.banner{padding:.7rem 1rem;border-radius:6px;border:1px solid}.ok{background:#e9f7ef;border-color:#b7e1c6}.bad{background:#fdecea;border-color:#f5c2bd}
.pill{display:inline-block;padding:0 .5rem;border-radius:999px;font-size:.85rem;background:#eef0f4}
.status-active{background:#e9f7ef;color:var(--ok)}.status-needs_reauth{background:#fdecea;color:var(--bad)}
.error{color:var(--bad)}
form{display:inline;margin:0}input{font:inherit;padding:.25rem .4rem;border:1px solid #cbd0d8;border-radius:4px;width:9rem}
button,.button{font:inherit;display:inline-block;padding:.3rem .8rem;border-radius:4px;border:1px solid var(--accent);background:var(--accent);color:#fff;cursor:pointer;text-decoration:none}
.button{background:#fff;color:var(--fg);border-color:#cbd0d8}
.danger{background:#fff;color:var(--bad);border-color:#f0b4ae}button.danger{background:var(--bad);color:#fff;border-color:var(--bad)}
.card{background:#fff;border:1px solid var(--line);border-radius:8px;padding:1.5rem 2rem;max-width:34rem;margin:4rem auto}
</style></head><body>
${body}
</body></html>
`;
}
