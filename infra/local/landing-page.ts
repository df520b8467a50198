import type { ServerResponse } from 'node:http';
import type { Broker } from '../../shared/broker.ts';
import { toPublicError } from '../../shared/errors.ts';
import { LogEventPublisher } from '../../shared/events.ts';
import { escapeHtml } from '../../shared/http/responses.ts';
import type { ConnectionSummary } from '../../shared/store/connection-directory.ts';

/**
 * The offline runtime's landing page (`/`): the configured providers with a Connect button, the
 * connections with their status and expiry, and the latest lifecycle events. Local only: in AWS
 * the team's own backend creates connect sessions through the `connections` function.
 * Returns false when the request is not for it.
 */
export async function serveLandingPage(
  broker: Broker,
  method: string,
  url: URL,
  body: string,
  res: ServerResponse,
  origin: string | undefined,
): Promise<boolean> {
  const home = `${url.origin}/`;
  if (method === 'GET' && url.pathname === '/') {
    res
      .writeHead(200, {
        'content-type': 'text/html; charset=utf-8',
        'cache-control': 'no-store',
        'content-security-policy': "default-src 'none'; style-src 'unsafe-inline'",
      })
      .end(await renderLandingPage(broker, url));
    return true;
  }
  if (
    method !== 'POST' ||
    (url.pathname !== '/local/connect' && url.pathname !== '/local/disconnect')
  ) {
    return false;
  }
  // Only this page's own forms: a browser always sends Origin with a cross-site form POST.
  if (origin !== undefined && origin !== url.origin) {
    res.writeHead(403, { 'content-type': 'text/plain' }).end('cross-origin form refused');
    return true;
  }
  const form = new URLSearchParams(body);
  const provider = form.get('provider') ?? '';
  const connectionId = form.get('connectionId') ?? '';
  try {
    if (url.pathname === '/local/connect') {
      const session = await broker.connect.createConnectSession({
        provider,
        connectionId,
        returnTo: home,
      });
      res.writeHead(303, { location: session.url }).end();
    } else {
      await broker.connections.handle({ action: 'delete', provider, connectionId });
      res.writeHead(303, { location: home }).end();
    }
  } catch (error) {
    const { code, message } = toPublicError(error);
    const back = new URL(home);
    back.searchParams.set('status', 'error');
    back.searchParams.set('error', code);
    back.searchParams.set('message', message);
    res.writeHead(303, { location: back.toString() }).end();
  }
  return true;
}

async function renderLandingPage(broker: Broker, url: URL): Promise<string> {
  const query = url.searchParams;
  const providers = [...broker.providers.values()];
  const connections: ConnectionSummary[] = [];
  for (const provider of providers) {
    const page = await broker.connections.handle({ action: 'list', provider: provider.id });
    if ('connections' in page) connections.push(...page.connections);
  }
  const events =
    broker.events instanceof LogEventPublisher ? broker.events.recent.slice(0, 20) : [];
  const banner = query.get('status')
    ? `<p class="banner ${query.get('status') === 'connected' ? 'ok' : 'bad'}">${escapeHtml(
        query.get('status') === 'connected'
          ? `Connected ${query.get('provider') ?? ''} / ${query.get('connection_id') ?? ''}.`
          : `Not connected: ${query.get('error') ?? 'error'}${query.get('message') ? ` — ${query.get('message')}` : ''}`,
      )}</p>`
    : '';

  const providerRows = providers
    .map((provider) => {
      // Consent at the provider, or (api_key / basic) the hosted credentials form.
      const action =
        provider.kind.variant !== 'client-credentials'
          ? `<form method="post" action="/local/connect">
<input type="hidden" name="provider" value="${escapeHtml(provider.id)}">
<input name="connectionId" value="demo-user" aria-label="connection id" required>
<button type="submit" id="connect-${escapeHtml(provider.id)}">Connect</button></form>`
          : '<span class="muted">client credentials: tokens on demand, no consent</span>';
      return `<tr><td>${escapeHtml(provider.id)}</td><td>${escapeHtml(provider.kind.kind)}</td><td>${action}</td></tr>`;
    })
    .join('\n');

  const connectionRows =
    connections.length === 0
      ? '<tr><td colspan="7" class="muted">No connections yet.</td></tr>'
      : connections
          .map(
            (c) => `<tr><td>${escapeHtml(c.provider)}</td><td>${escapeHtml(c.connectionId)}</td>
<td class="status-${escapeHtml(c.status)}">${escapeHtml(c.status)}</td>
<td>${escapeHtml(c.accessTokenExpiresAt ?? 'never')}</td><td>${escapeHtml(c.nextRefreshAt ?? '—')}</td>
<td>${escapeHtml(c.lastError ? `${c.lastError.code}: ${c.lastError.message}` : '')}</td>
<td><form method="post" action="/local/disconnect">
<input type="hidden" name="provider" value="${escapeHtml(c.provider)}">
<input type="hidden" name="connectionId" value="${escapeHtml(c.connectionId)}">
<button type="submit">Disconnect</button></form></td></tr>`,
          )
          .join('\n');

  const eventRows =
    events.length === 0
      ? '<li class="muted">None yet.</li>'
      : events
          .map(
            (e) =>
              `<li>${escapeHtml(new Date(e.at).toISOString())} — <b>${escapeHtml(e.type)}</b> ${escapeHtml(
                `${e.provider}/${e.connectionId} (${e.status})${e.reason ? `: ${e.reason}` : ''}`,
              )}</li>`,
          )
          .join('\n');

  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>oauth-token-broker (local)</title>
<style>
body{font:15px/1.5 system-ui,sans-serif;max-width:70rem;margin:2rem auto;padding:0 1rem}
table{border-collapse:collapse;width:100%;margin-bottom:2rem}td,th{border-bottom:1px solid #ddd;padding:.4rem;text-align:left}
.muted{color:#777}.banner{padding:.6rem 1rem;border-radius:4px}.ok{background:#e6f6e6}.bad{background:#fbe9e9}
.status-active{color:#176c17}.status-needs_reauth{color:#a11}
form{display:inline}
</style></head><body>
<h1>oauth-token-broker — local</h1>
${banner}
<h2>Providers</h2>
<table><thead><tr><th>id</th><th>kind</th><th></th></tr></thead><tbody>
${providerRows}
</tbody></table>
<h2>Connections</h2>
<table id="connections"><thead><tr><th>provider</th><th>connection</th><th>status</th><th>access token expires</th><th>next refresh</th><th>last error</th><th></th></tr></thead><tbody>
${connectionRows}
</tbody></table>
<h2>Lifecycle events</h2>
<ul id="events">
${eventRows}
</ul>
<p class="muted">Fetch a token: <code>aws lambda invoke --endpoint-url ${escapeHtml(url.origin)} --function-name token --cli-binary-format raw-in-base64-out --payload '{"provider":"…","connectionId":"…"}' out.json</code></p>
</body></html>
`;
}
