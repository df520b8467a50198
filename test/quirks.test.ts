import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { parseConfig } from '../shared/config.ts';
import { TestBrowser } from './helpers/browser.ts';
import { startTestBroker, type TestBroker } from './helpers/local.ts';

// Every quirk field of the oauth2 kind against one small emulator that answers the way that
// quirk describes (not an emulator of any whole provider): its token endpoint's answer depends
// on the path it is called at, and it records every request it gets. The broker is the real
// offline runtime; providers come from configuration alone.

interface Recorded {
  path: string;
  contentType: string | undefined;
  authorization: string | undefined;
  body: Record<string, unknown>;
}

let emulator: Server;
let base: string;
let local: TestBroker;
let dataDir: string;
let requests: Recorded[] = [];
let issued = 0;
const APP = 'http://app.localhost/';
const CLIENT = { client_id: 'quirk-client', client_secret: 'quirk-secret-value' };

/** The answer of the token endpoint at /<answer>/token (and /<tenant>/<answer>/token). */
function tokenAnswer(answer: string): { status: number; body: unknown } {
  issued += 1;
  const token = { access_token: `at-${issued}`, token_type: 'bearer', expires_in: 3600 };
  switch (answer) {
    case 'rfc':
      return { status: 200, body: { ...token, refresh_token: `rt-${issued}` } };
    case 'envelope':
      return { status: 200, body: { success: true, data: token } };
    case 'nested':
      return {
        status: 200,
        body: { ok: true, team: { id: 'T123', name: 'Acme' }, authed_user: token },
      };
    case 'ok-false':
      return { status: 200, body: { ok: false, error: 'invalid_auth' } };
    case 'code-401':
      return { status: 200, body: { code: 401, message: 'Unauthorized' } };
    case 'code-200':
      return { status: 200, body: { code: 200, data: token } };
    case 'no-expiry':
      return { status: 200, body: { access_token: token.access_token, token_type: 'bearer' } };
    case 'odd-type':
      return { status: 200, body: { ...token, token_type: 'mac' } };
    case 'instance':
      return {
        status: 200,
        body: { ...token, refresh_token: `rt-${issued}`, instance_url: 'https://eu7.example.com' },
      };
    default:
      return { status: 404, body: { error: 'not_found' } };
  }
}

beforeAll(async () => {
  emulator = createServer(async (req, res) => {
    let text = '';
    for await (const chunk of req) text += String(chunk);
    const url = new URL(req.url ?? '/', base);
    const parts = url.pathname.split('/').filter(Boolean);
    if (parts.at(-1) === 'authorize') {
      // The person approves at once: back to redirect_uri with a code, the state, and a
      // callback parameter some providers add (QuickBooks' realmId).
      const back = new URL(url.searchParams.get('redirect_uri')!);
      back.searchParams.set('code', `code-${randomBytes(4).toString('hex')}`);
      back.searchParams.set('state', url.searchParams.get('state')!);
      back.searchParams.set('realmId', 'R-42');
      res.writeHead(302, { location: back.toString() }).end();
      return;
    }
    if (url.pathname === '/header-api/me') {
      // An API that takes its access token bare in a header of its own (Shopify's Admin API:
      // X-Shopify-Access-Token) and refuses an Authorization header.
      const sent = req.headers['x-shopify-access-token'];
      const accepted =
        typeof sent === 'string' && /^at-\d+$/.test(sent) && !req.headers.authorization;
      res.writeHead(accepted ? 200 : 401).end();
      return;
    }
    const contentType = req.headers['content-type'];
    const body = contentType?.includes('json')
      ? (JSON.parse(text) as Record<string, unknown>)
      : Object.fromEntries(new URLSearchParams(text));
    requests.push({
      path: url.pathname,
      contentType,
      authorization: req.headers.authorization,
      body,
    });
    const answer = tokenAnswer(parts.at(-2) ?? '');
    res.writeHead(answer.status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(answer.body));
  });
  await new Promise<void>((done) => emulator.listen(0, '127.0.0.1', done));
  base = `http://127.0.0.1:${(emulator.address() as AddressInfo).port}`;

  const cc = (answer: string, fields: Record<string, unknown> = {}) => ({
    kind: 'oauth2',
    grant: 'client_credentials',
    tokenUrl: `${base}/${answer}/token`,
    ...fields,
  });
  const providers: Record<string, Record<string, unknown>> = {
    'form-basic': cc('rfc'),
    'json-post': cc('rfc', {
      tokenRequestEncoding: 'json',
      clientAuthentication: 'client_secret_post',
    }),
    envelope: cc('envelope', {
      tokenResponsePath: 'data',
      successWhen: { path: 'success', equals: true },
    }),
    nested: cc('nested', {
      tokenResponsePath: 'authed_user',
      successWhen: { path: 'ok', equals: true },
      metadata: { teamId: 'token.team.id', teamName: 'token.team.name' },
    }),
    'ok-false': cc('ok-false', {
      successWhen: { path: 'ok', equals: true },
      errorMessagePath: 'error',
    }),
    'code-401': cc('code-401', { successWhen: { path: 'code', min: 200, max: 299 } }),
    'code-200': cc('code-200', {
      successWhen: { path: 'code', min: 200, max: 299 },
      tokenResponsePath: 'data',
    }),
    'no-expiry': cc('no-expiry', { defaultExpiresInSeconds: 7200 }),
    'no-expiry-unknown': cc('no-expiry'),
    'odd-type': cc('odd-type', { tokenType: 'Token' }),
    'token-header': cc('rfc', { accessTokenHeader: 'X-Shopify-Access-Token' }),
    'scope-again': cc('rfc', { scopes: ['read', 'write'], refreshSendsScope: true }),
    'scope-once': cc('rfc', { scopes: ['read', 'write'] }),
    'extra-params': cc('rfc', { tokenParams: { audience: 'https://api.example/' } }),
    'user-scope': {
      kind: 'oauth2',
      authorizationUrl: `${base}/authorize`,
      tokenUrl: `${base}/rfc/token`,
      scopes: ['chat:write', 'users:read'],
      scopeSeparator: ',',
      scopeParam: 'user_scope',
    },
    tenant: {
      kind: 'oauth2',
      authorizationUrl: `${base}/{tenant}/authorize`,
      tokenUrl: `${base}/{tenant}/instance/token`,
      connectionParams: {
        tenant: { description: 'Your tenant', pattern: '^[a-z][a-z0-9-]{0,30}$' },
      },
      authorizationParams: { prompt: 'consent', access_type: 'offline' },
      metadata: { instanceUrl: 'token.instance_url', realmId: 'callback.realmId' },
      headers: { 'X-Api-Version': '2024-01' },
    },
  };
  dataDir = mkdtempSync(join(tmpdir(), 'broker-quirks-'));
  writeFileSync(
    join(dataDir, 'secrets.json'),
    JSON.stringify(Object.fromEntries(Object.keys(providers).map((id) => [id, CLIENT]))),
  );
  local = await startTestBroker({
    dataDir,
    config: parseConfig({ allowedReturnTo: [APP], providers }),
  });
});

afterAll(async () => {
  await local?.close();
  emulator?.closeAllConnections();
  await new Promise((done) => emulator?.close(done));
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

beforeEach(() => {
  requests = [];
});

const token = (provider: string, extra: Record<string, unknown> = {}) =>
  local.invoke({ provider, ...extra });
/** The client of an HTTP Basic header, each part form-decoded (RFC 6749 §2.3.1). */
function basicClient(header: string | undefined): { client_id?: string; client_secret?: string } {
  const match = /^Basic (.+)$/.exec(header ?? '');
  if (!match) return {};
  const [id, secret] = Buffer.from(match[1]!, 'base64').toString().split(':');
  return { client_id: decodeURIComponent(id!), client_secret: decodeURIComponent(secret!) };
}

describe('token request body and client authentication', () => {
  it('form body with HTTP Basic by default (RFC 6749 §2.3.1)', async () => {
    expect(await token('form-basic')).toMatchObject({ ok: true, accessToken: expect.any(String) });
    expect(requests).toEqual([
      {
        path: '/rfc/token',
        contentType: expect.stringMatching(/^application\/x-www-form-urlencoded/),
        authorization: expect.stringMatching(/^Basic /),
        body: { grant_type: 'client_credentials' },
      },
    ]);
    expect(basicClient(requests[0]!.authorization)).toEqual(CLIENT);
  });

  it('tokenRequestEncoding json and clientAuthentication client_secret_post: a JSON body with the client', async () => {
    expect(await token('json-post')).toMatchObject({ ok: true });
    expect(requests).toEqual([
      {
        path: '/rfc/token',
        contentType: 'application/json',
        authorization: undefined,
        body: { grant_type: 'client_credentials', ...CLIENT },
      },
    ]);
  });
});

describe('reading the answer', () => {
  it('tokenResponsePath: the token fields under an envelope', async () => {
    const answer = await token('envelope');
    expect(answer).toMatchObject({ ok: true, accessToken: expect.stringMatching(/^at-/) });
    expect(Date.parse(answer.expiresAt as string)).toBe(local.clock.t + 3_600_000);
  });

  it('tokenResponsePath and metadata from the answer root (team.id), returned by get and token', async () => {
    const answer = await token('nested');
    expect(answer).toMatchObject({
      ok: true,
      accessToken: expect.stringMatching(/^at-/),
      metadata: { teamId: 'T123', teamName: 'Acme' },
    });
    const got = await local.invokeFunction('connections', {
      action: 'get',
      provider: 'nested',
      connectionId: 'default',
    });
    expect(got).toMatchObject({ ok: true, connection: { metadata: { teamId: 'T123' } } });
  });

  it('successWhen equals: an HTTP 200 with "ok": false is a refusal with its error code', async () => {
    const answer = await token('ok-false');
    expect(answer).toMatchObject({
      ok: false,
      error: { code: 'provider_rejected', message: expect.stringContaining('(invalid_auth)') },
    });
  });

  it('successWhen min/max: an HTTP 200 whose code is 401 is a refusal; code 200 is read', async () => {
    expect(await token('code-401')).toMatchObject({
      ok: false,
      error: { code: 'provider_rejected' },
    });
    expect(await token('code-200')).toMatchObject({ ok: true, accessToken: expect.any(String) });
  });

  it('tokenType: the configured type in the Authorization header whatever the answer says', async () => {
    const answer = await token('odd-type');
    expect(answer).toMatchObject({ ok: true, tokenType: 'Token' });
    expect(answer.authorization).toBe(`Token ${answer.accessToken as string}`);
  });
});

describe('accessTokenHeader: an API that wants the token in a header of its own', () => {
  it('puts the bare token in that header instead of Authorization, and the API takes it', async () => {
    const answer = await token('token-header');
    expect(answer).toMatchObject({ ok: true });
    const headers = answer.headers as Record<string, string>;
    expect(headers).toEqual({ 'X-Shopify-Access-Token': answer.accessToken });
    expect((await fetch(`${base}/header-api/me`, { headers })).status).toBe(200);
    // The default (Authorization: Bearer …) is what such an API refuses.
    const plain = (await token('form-basic')).headers as Record<string, string>;
    expect(plain).toHaveProperty('Authorization');
    expect((await fetch(`${base}/header-api/me`, { headers: plain })).status).toBe(401);
  });
});

describe('defaultExpiresInSeconds: an answer without expires_in', () => {
  it('assumes the lifetime, flags the connection in get and list, and renews on forceRefresh', async () => {
    const first = await token('no-expiry');
    expect(Date.parse(first.expiresAt as string)).toBe(local.clock.t + 7_200_000);
    const got = await local.invokeFunction('connections', {
      action: 'get',
      provider: 'no-expiry',
      connectionId: 'default',
    });
    expect(got).toMatchObject({ connection: { expiryAssumed: true } });
    const listed = await local.invokeFunction('connections', {
      action: 'list',
      provider: 'no-expiry',
    });
    expect(listed).toMatchObject({ connections: [{ expiryAssumed: true }] });
    // The refresher has it due before the assumed end, like any expiring token.
    expect((got.connection as { nextRefreshAt: string | null }).nextRefreshAt).not.toBeNull();

    const forced = await token('no-expiry', { forceRefresh: true });
    expect(forced.ok).toBe(true);
    expect(forced.accessToken).not.toBe(first.accessToken);
  });

  it('without the field, an answer without expires_in is taken as not expiring, and not flagged', async () => {
    const answer = await token('no-expiry-unknown');
    expect(answer).toMatchObject({ ok: true, expiresAt: null });
    const got = await local.invokeFunction('connections', {
      action: 'get',
      provider: 'no-expiry-unknown',
      connectionId: 'default',
    });
    expect(got).toMatchObject({ connection: { expiryAssumed: false } });
  });
});

describe('request parameters', () => {
  it('refreshSendsScope: the scope goes again with the refresh; without it, it does not', async () => {
    for (const [provider, sent] of [
      ['scope-again', 'read write'],
      ['scope-once', undefined],
    ] as const) {
      await token(provider);
      requests = [];
      // The stored answer carried a refresh token: a forced renewal refreshes with it.
      expect(await token(provider, { forceRefresh: true })).toMatchObject({ ok: true });
      expect(requests).toHaveLength(1);
      expect(requests[0]!.body).toMatchObject({ grant_type: 'refresh_token' });
      expect(requests[0]!.body.scope).toBe(sent);
    }
  });

  it('tokenParams: extra parameters on every token request', async () => {
    await token('extra-params');
    expect(requests[0]!.body).toEqual({
      grant_type: 'client_credentials',
      audience: 'https://api.example/',
    });
  });
});

describe('connection params, authorization params and callback metadata (authorization code)', () => {
  async function connect(connectionId: string, params: Record<string, string>) {
    const session = await local.invokeFunction('connections', {
      action: 'createConnectSession',
      provider: 'tenant',
      connectionId,
      returnTo: APP,
      params,
    });
    return session;
  }

  it('fills {tenant} from createConnectSession, sends the extra parameters, keeps realmId and instance_url', async () => {
    const session = await connect('dave', { tenant: 'acme' });
    expect(session.ok).toBe(true);
    const browser = new TestBrowser();
    const start = await browser.request(session.url as string);
    expect(start.status).toBe(302);
    const authorize = new URL(start.headers.get('location')!);
    expect(authorize.pathname).toBe('/acme/authorize');
    expect(authorize.searchParams.get('prompt')).toBe('consent');
    expect(authorize.searchParams.get('access_type')).toBe('offline');
    const back = await fetch(authorize, { redirect: 'manual' });
    const done = await browser.request(back.headers.get('location')!);
    expect(done.status).toBe(302);
    expect(new URL(done.headers.get('location')!).searchParams.get('status')).toBe('connected');
    expect(requests.map((request) => request.path)).toEqual(['/acme/instance/token']);

    const answer = await token('tenant', { connectionId: 'dave' });
    expect(answer).toMatchObject({
      ok: true,
      metadata: { instanceUrl: 'https://eu7.example.com', realmId: 'R-42' },
      headers: { 'X-Api-Version': '2024-01', Authorization: expect.stringMatching(/^Bearer /) },
    });
    const got = await local.invokeFunction('connections', {
      action: 'get',
      provider: 'tenant',
      connectionId: 'dave',
    });
    expect(got).toMatchObject({
      connection: { metadata: { instanceUrl: 'https://eu7.example.com', realmId: 'R-42' } },
    });
    // Renewal goes to the same tenant's token endpoint and keeps the callback's metadata.
    requests = [];
    const renewed = await token('tenant', { connectionId: 'dave', forceRefresh: true });
    expect(renewed).toMatchObject({ ok: true, metadata: { realmId: 'R-42' } });
    expect(requests.map((request) => request.path)).toEqual(['/acme/instance/token']);
    expect(requests[0]!.body).toMatchObject({ grant_type: 'refresh_token' });
  });

  it('scopeParam: the scopes go in the parameter the server reads (user_scope), not scope', async () => {
    const session = await local.invokeFunction('connections', {
      action: 'createConnectSession',
      provider: 'user-scope',
      connectionId: 'frank',
      returnTo: APP,
    });
    expect(session.ok).toBe(true);
    const browser = new TestBrowser();
    const start = await browser.request(session.url as string);
    expect(start.status).toBe(302);
    const authorize = new URL(start.headers.get('location')!);
    expect(authorize.searchParams.get('user_scope')).toBe('chat:write,users:read');
    expect(authorize.searchParams.has('scope')).toBe(false);
    const back = await fetch(authorize, { redirect: 'manual' });
    const done = await browser.request(back.headers.get('location')!);
    expect(new URL(done.headers.get('location')!).searchParams.get('status')).toBe('connected');
  });

  it('refuses a missing, malformed or undeclared param at createConnectSession', async () => {
    expect(await connect('erin', {})).toMatchObject({
      ok: false,
      error: { code: 'invalid_request', message: expect.stringContaining('params.tenant') },
    });
    expect(await connect('erin', { tenant: 'evil.example/x' })).toMatchObject({
      ok: false,
      error: { code: 'invalid_request', message: expect.stringContaining('params.tenant') },
    });
    expect(await connect('erin', { tenant: 'acme', shop: 'x' })).toMatchObject({
      ok: false,
      error: { code: 'invalid_request', message: expect.stringContaining('params.shop') },
    });
  });

  it('refuses metadata that would keep a secret', () => {
    expect(() =>
      parseConfig({
        providers: {
          leak: {
            kind: 'oauth2',
            grant: 'client_credentials',
            tokenUrl: `${base}/rfc/token`,
            metadata: { token: 'token.access_token' },
          },
        },
      }),
    ).toThrowError(/providers\.leak\.metadata\.token/);
  });
});
