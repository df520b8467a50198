import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { QuiptSandbox } from '../infra/local/sandbox/quipt-sandbox.ts';
import { parseConfig } from '../shared/config.ts';
import type { ProviderRequest } from '../shared/providers/http.ts';
import { TestBrowser } from './helpers/browser.ts';
import { startTestBroker, type TestBroker } from './helpers/local.ts';
import { startOidcProvider, type TestOidcProvider } from './helpers/oidc.ts';

// Providers from configuration alone, over real HTTP: oidc-provider (panva) as an OAuth 2.0
// server for client credentials, typed or discovered from its issuer; and an OAuth 1.0a provider
// whose paths are not Quipt's and which signs with HMAC-SHA256 — the sandbox's independent
// RFC 5849 server, configured with other paths and method, on its own port.

let oidc: TestOidcProvider;
let local: TestBroker;
let dataDir: string;
let ledger: QuiptSandbox;
let ledgerServer: Server;
let ledgerUrl: string;
let metadataServer: Server;
let metadataIssuer: string;
const APP = 'http://app.localhost/';

beforeAll(async () => {
  oidc = await startOidcProvider({ scopes: ['api:read'] });

  const consumerKey = `ledger-${randomBytes(4).toString('hex')}`;
  const consumerSecret = randomBytes(24).toString('base64url');
  ledger = new QuiptSandbox(
    'ledger',
    new Map([[consumerKey, consumerSecret]]),
    randomBytes(32),
    () => local.clock.now(),
  );
  ledger.paths = {
    initiate: '/api/oauth/request_token',
    authorize: '/connect/authorize',
    token: '/api/oauth/access_token',
    api: '/rest/1.1/account',
  };
  ledger.signatureMethod = 'HMAC-SHA256';
  ledgerServer = createServer(async (req, res) => {
    let body = '';
    for await (const chunk of req) body += String(chunk);
    // The emulator is mounted under /ledger, as the sandboxes are under /sandbox/<id>.
    const url = new URL(req.url ?? '/', ledgerUrl);
    await ledger.handle(
      {
        method: req.method ?? 'GET',
        path: url.pathname.replace(/^\/ledger/, ''),
        query: url.searchParams,
        baseUrl: ledgerUrl,
        headers: req.headers,
        body,
      },
      res,
    );
  });
  await new Promise<void>((done) => ledgerServer.listen(0, '127.0.0.1', done));
  ledgerUrl = `http://127.0.0.1:${(ledgerServer.address() as AddressInfo).port}/ledger`;
  metadataServer = createServer((req, res) => {
    // RFC 8414 §3: the metadata of an issuer whose token endpoint is oidc-provider's.
    if (req.url !== '/.well-known/oauth-authorization-server') return void res.writeHead(404).end();
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ issuer: metadataIssuer, token_endpoint: oidc.tokenUrl }));
  });
  await new Promise<void>((done) => metadataServer.listen(0, '127.0.0.1', done));
  metadataIssuer = `http://127.0.0.1:${(metadataServer.address() as AddressInfo).port}`;

  const { machine } = oidc.clients;
  const machineSecret = { client_id: machine.client_id, client_secret: machine.client_secret };
  dataDir = mkdtempSync(join(tmpdir(), 'broker-generic-'));
  writeFileSync(
    join(dataDir, 'secrets.json'),
    JSON.stringify({
      machine: machineSecret,
      'machine-discovered': machineSecret,
      'machine-rfc8414': machineSecret,
      ledger: { consumer_key: consumerKey, consumer_secret: consumerSecret },
    }),
  );
  local = await startTestBroker({
    dataDir,
    config: parseConfig({
      allowedReturnTo: [APP],
      providers: {
        machine: {
          kind: 'oauth2',
          grant: 'client_credentials',
          tokenUrl: oidc.tokenUrl,
          scopes: ['api:read'],
        },
        'machine-discovered': {
          kind: 'oauth2',
          grant: 'client_credentials',
          issuer: oidc.issuer,
          scopes: ['api:read'],
        },
        'machine-rfc8414': {
          kind: 'oauth2',
          grant: 'client_credentials',
          issuer: metadataIssuer,
          discovery: 'oauth2',
        },
        ledger: {
          kind: 'oauth1',
          requestTokenUrl: '{baseUrl}/api/oauth/request_token',
          authorizeUrl: '{baseUrl}/connect/authorize?oauth_token={oauth_token}',
          accessTokenUrl: '{baseUrl}/api/oauth/access_token',
          apiBaseUrl: '{baseUrl}/rest/1.1',
          signatureMethod: 'HMAC-SHA256',
          baseUrl: ledgerUrl,
        },
      },
    }),
  });
});

afterAll(async () => {
  await local?.close();
  await oidc?.close();
  ledgerServer?.closeAllConnections();
  metadataServer?.closeAllConnections();
  await new Promise((done) => metadataServer?.close(done));
  await new Promise((done) => ledgerServer?.close(done));
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

describe('oauth2 client credentials (RFC 6749 §4.4) against oidc-provider', () => {
  it('mints on first use, serves the stored token, re-mints on forceRefresh; the server knows each token', async () => {
    const first = await local.invoke({ provider: 'machine' });
    expect(first).toMatchObject({ ok: true, connectionId: 'default', tokenType: 'Bearer' });
    const token = first.accessToken as string;
    expect(await oidc.introspect(token)).toMatchObject({
      active: true,
      client_id: oidc.clients.machine.client_id,
      scope: 'api:read',
    });
    // oidc-provider's client-credentials tokens live 600 s (its ClientCredentials TTL).
    expect(Date.parse(first.expiresAt as string)).toBe(local.clock.t + 600_000);

    const again = await local.invoke({ provider: 'machine' });
    expect(again.accessToken).toBe(token);

    const forced = await local.invoke({ provider: 'machine', forceRefresh: true });
    expect(forced.ok).toBe(true);
    expect(forced.accessToken).not.toBe(token);
    expect(await oidc.introspect(forced.accessToken as string)).toMatchObject({ active: true });
  });

  it('a wrong client secret is provider_rejected (invalid_client), nothing stored', async () => {
    const { kind, context } = local.broker.providers.get('machine')!;
    if (kind.variant !== 'client-credentials') throw new Error('machine mints');
    const wrong = {
      ...context,
      secret: async () => ({ ...(await context.secret()), client_secret: 'wrong' }),
    };
    await expect(kind.mint(wrong)).rejects.toMatchObject({
      code: 'provider_rejected',
      providerCode: 'invalid_client',
    });
  });
});

describe('oauth2 issuer discovery (OIDC Discovery / RFC 8414)', () => {
  it('finds the token endpoint from the issuer, once per container, and mints from it', async () => {
    const { kind, context } = local.broker.providers.get('machine-discovered')!;
    if (kind.variant !== 'client-credentials') throw new Error('it mints');
    const calls: ProviderRequest[] = [];
    const counted = {
      ...context,
      http: ((request, read) => {
        calls.push(request);
        return context.http(request, read);
      }) as typeof context.http,
    };
    const first = await kind.mint(counted);
    const second = await kind.mint(counted);
    expect(await oidc.introspect(first.accessToken)).toMatchObject({ active: true });
    expect(await oidc.introspect(second.accessToken)).toMatchObject({ active: true });
    expect(calls.map((call) => `${call.method} ${call.url}`)).toEqual([
      `GET ${oidc.issuer}/.well-known/openid-configuration`,
      `POST ${oidc.tokenUrl}`,
      `POST ${oidc.tokenUrl}`,
    ]);
  });

  it('speaks RFC 8414 (/.well-known/oauth-authorization-server) when told to', async () => {
    const { kind, context } = local.broker.providers.get('machine-rfc8414')!;
    if (kind.variant !== 'client-credentials') throw new Error('it mints');
    const urls: string[] = [];
    const tokens = await kind.mint({
      ...context,
      http: ((request, read) => {
        urls.push(request.url);
        return context.http(request, read);
      }) as typeof context.http,
    });
    expect(urls).toEqual([
      `${metadataIssuer}/.well-known/oauth-authorization-server`,
      oidc.tokenUrl,
    ]);
    expect(await oidc.introspect(tokens.accessToken)).toMatchObject({ active: true });
  });
});

describe('oauth1: another provider (other paths, HMAC-SHA256) from configuration alone', () => {
  it('connects through the hosted flow and signs API calls the provider accepts', async () => {
    const session = await local.invokeFunction('connections', {
      action: 'createConnectSession',
      provider: 'ledger',
      connectionId: 'carol',
      returnTo: APP,
    });
    expect(session.ok).toBe(true);
    const browser = new TestBrowser();
    const start = await browser.request(session.url as string);
    expect(start.status).toBe(302);
    const authorizeUrl = new URL(start.headers.get('location')!);
    expect(`${authorizeUrl.origin}${authorizeUrl.pathname}`).toBe(`${ledgerUrl}/connect/authorize`);
    const page = await browser.request(authorizeUrl.toString());
    const decided = await browser.submitForm(await page.text(), authorizeUrl.toString(), {
      decision: 'allow',
    });
    expect(decided.status).toBe(302);
    const callback = new URL(decided.headers.get('location')!);
    expect(callback.pathname).toBe('/callback/ledger');
    const done = await browser.request(callback.toString());
    expect(done.status).toBe(302);
    expect(Object.fromEntries(new URL(done.headers.get('location')!).searchParams)).toMatchObject({
      status: 'connected',
      provider: 'ledger',
    });
    expect(ledger.callCount('initiate') + ledger.callCount('token')).toBeGreaterThanOrEqual(2);

    const api = `${ledgerUrl}/rest/1.1/account?include=balance`;
    const signed = await local.invoke({
      provider: 'ledger',
      connectionId: 'carol',
      sign: { method: 'GET', url: api },
    });
    expect(signed.authorization).toMatch(/oauth_signature_method="HMAC-SHA256"/);
    const account = await fetch(api, {
      headers: { authorization: signed.authorization as string },
    });
    expect(account.status).toBe(200);

    // The same request signed with HMAC-SHA1 is refused: the method is the entry's, not a default.
    const sha1 = (signed.authorization as string).replace('HMAC-SHA256', 'HMAC-SHA1');
    expect((await fetch(api, { headers: { authorization: sha1 } })).status).toBe(400);

    // sign is limited to the entry's API base URL.
    const outside = await local.invoke({
      provider: 'ledger',
      connectionId: 'carol',
      sign: { method: 'GET', url: `${ledgerUrl}/api/oauth/access_token` },
    });
    expect(outside).toMatchObject({ ok: false, error: { code: 'invalid_request' } });
  });
});
