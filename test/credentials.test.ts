import { randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../shared/config.ts';
import { TestBrowser } from './helpers/browser.ts';
import { captureOutput, startTestBroker, type TestBroker } from './helpers/local.ts';

// api_key and basic providers, from their catalog entries (SendGrid, Twilio) pointed at a small
// local API that accepts one key and one account, and an inline api_key entry with no
// verification: the hosted form over real HTTP (session, cookie, single use), the IAM-only
// storeCredentials action, and the headers the token answer hands out, checked by that API.

let api: Server;
let apiUrl: string;
let local: TestBroker;
const APP = 'http://app.localhost/';
const goodKey = `SG.${randomBytes(12).toString('hex')}`;
const account = {
  sid: `AC${randomBytes(8).toString('hex')}`,
  token: randomBytes(12).toString('hex'),
};

beforeAll(async () => {
  api = createServer((req, res) => {
    const url = new URL(req.url ?? '/', apiUrl);
    const auth = req.headers.authorization ?? '';
    let ok = false;
    if (url.pathname === '/v3/scopes') ok = auth === `Bearer ${goodKey}`;
    else if (url.pathname === `/2010-04-01/Accounts/${account.sid}.json`) {
      ok = auth === `Basic ${Buffer.from(`${account.sid}:${account.token}`).toString('base64')}`;
    } else if (url.pathname === '/plain/me') ok = req.headers['x-api-key'] === 'plain-key-value';
    res.writeHead(ok ? 200 : 401, { 'content-type': 'application/json' });
    res.end(
      JSON.stringify(ok ? { ok: true } : { errors: [{ message: 'authorization required' }] }),
    );
  });
  await new Promise<void>((done) => api.listen(0, '127.0.0.1', done));
  apiUrl = `http://127.0.0.1:${(api.address() as AddressInfo).port}`;
  local = await startTestBroker({
    config: parseConfig({
      allowedReturnTo: [APP],
      providers: {
        sendgrid: { catalog: 'sendgrid', apiBaseUrl: apiUrl },
        twilio: { catalog: 'twilio', apiBaseUrl: `${apiUrl}/2010-04-01` },
        plain: {
          kind: 'api_key',
          displayName: 'Plain API',
          credentialFields: { apiKey: { label: 'API key', secret: true } },
          headers: { 'X-API-Key': '{credentials.apiKey}' },
        },
        quiqup: { catalog: 'quiqup', environment: 'sandbox' },
      },
    }),
  });
});

afterAll(async () => {
  await local?.close();
  api?.closeAllConnections();
  await new Promise((done) => api?.close(done));
});

async function openForm(provider: string, connectionId: string, returnTo?: string) {
  const session = await local.invokeFunction('connections', {
    action: 'createConnectSession',
    provider,
    connectionId,
    ...(returnTo ? { returnTo } : {}),
  });
  expect(session.ok).toBe(true);
  const browser = new TestBrowser();
  const page = await browser.request(session.url as string);
  const html = await page.text();
  return { browser, page, html, pageUrl: session.url as string };
}

describe('the hosted credentials form (api_key)', () => {
  it('shows a form bound to this browser; the right key connects and the token answer carries its header', async () => {
    const { browser, page, html, pageUrl } = await openForm('sendgrid', 'team-a', APP);
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toMatch(/^text\/html/);
    expect(page.headers.get('cache-control')).toBe('no-store');
    expect(page.headers.getSetCookie().join()).toMatch(/HttpOnly/i);
    expect(html).toContain('<form method="post"');
    expect(html).toMatch(/name="apiKey" type="password"/);
    expect(html).not.toMatch(/<script/i);

    const { result: done, output } = await captureOutput(() =>
      browser.submitForm(html, pageUrl, { apiKey: goodKey }),
    );
    expect(done.status).toBe(302);
    const location = new URL(done.headers.get('location')!);
    expect(Object.fromEntries(location.searchParams)).toEqual({
      status: 'connected',
      provider: 'sendgrid',
      connection_id: 'team-a',
    });
    // The key is in no URL we built and no log line.
    expect(location.toString()).not.toContain(goodKey);
    expect(browser.hops.map((hop) => `${hop.url} ${hop.location ?? ''}`).join()).not.toContain(
      goodKey,
    );
    expect(output).not.toContain(goodKey);

    const answer = await local.invoke({ provider: 'sendgrid', connectionId: 'team-a' });
    expect(answer).toEqual({
      ok: true,
      provider: 'sendgrid',
      connectionId: 'team-a',
      tokenType: 'ApiKey',
      headers: { Authorization: `Bearer ${goodKey}` },
    });
    const check = await fetch(`${apiUrl}/v3/scopes`, {
      headers: answer.headers as Record<string, string>,
    });
    expect(check.status).toBe(200);
    const summary = await local.invokeFunction('connections', {
      action: 'get',
      provider: 'sendgrid',
      connectionId: 'team-a',
    });
    expect(summary).toMatchObject({ ok: true, connection: { status: 'active' } });
    expect(JSON.stringify(summary)).not.toContain(goodKey);
  });

  it('refuses a wrong key at connect time with a clear message, and stores nothing', async () => {
    const { browser, html, pageUrl } = await openForm('sendgrid', 'team-b');
    const refused = await browser.submitForm(html, pageUrl, { apiKey: 'SG.wrong-key' });
    expect(refused.status).toBe(400);
    const text = await refused.text();
    expect(text).toContain('refused these credentials (HTTP 401): check the API key');
    expect(text).not.toContain('SG.wrong-key');
    expect(await local.broker.store.get('sendgrid', 'team-b')).toBeUndefined();
  });

  it('is single use, needs the cookie of the browser that opened it, and takes no key in a URL', async () => {
    const first = await openForm('plain', 'p1');
    const state = /name="state" value="([^"]+)"/.exec(first.html)![1]!;
    const callback = `${local.url}/callback/plain`;

    // A key in the query string is refused before anything is consumed.
    const inUrl = await first.browser.request(`${callback}?state=${state}&apiKey=plain-key-value`);
    expect(inUrl.status).toBe(400);
    // Another browser (no cookie: a cross-site post would not carry it either) is refused.
    const stranger = await new TestBrowser().request(callback, {
      form: { state, apiKey: 'plain-key-value' },
    });
    expect(stranger.status).toBe(400);
    expect(await stranger.text()).toMatch(/did not start this connection/);

    // The right browser connects once; the same form again finds nothing.
    const done = await first.browser.submitForm(first.html, first.pageUrl, {
      apiKey: 'plain-key-value',
    });
    expect(done.status).toBe(200);
    expect(await done.text()).toMatch(/connected/);
    const again = await first.browser.submitForm(first.html, first.pageUrl, {
      apiKey: 'plain-key-value',
    });
    expect(again.status).toBe(400);

    const answer = await local.invoke({ provider: 'plain', connectionId: 'p1' });
    expect(answer.headers).toEqual({ 'X-API-Key': 'plain-key-value' });
    const check = await fetch(`${apiUrl}/plain/me`, {
      headers: answer.headers as Record<string, string>,
    });
    expect(check.status).toBe(200);
    // Nothing to renew: forceRefresh is refused and leaves the connection as it is.
    expect(
      await local.invoke({ provider: 'plain', connectionId: 'p1', forceRefresh: true }),
    ).toMatchObject({ ok: false, error: { code: 'invalid_request' } });
    expect((await local.broker.store.get('plain', 'p1'))?.status).toBe('active');
  });
});

describe('storeCredentials (connections function, IAM only) for a basic provider', () => {
  it('verifies before storing: wrong password refused, right one stored; the answer is a Basic header', async () => {
    const wrong = await local.invokeFunction('connections', {
      action: 'storeCredentials',
      provider: 'twilio',
      connectionId: 'ops',
      credentials: { username: account.sid, password: 'not-the-token' },
    });
    expect(wrong).toMatchObject({
      ok: false,
      error: {
        code: 'invalid_request',
        message: expect.stringContaining('refused these credentials (HTTP 401)'),
      },
    });
    expect(JSON.stringify(wrong)).not.toContain('not-the-token');
    expect(await local.broker.store.get('twilio', 'ops')).toBeUndefined();

    const stored = await local.invokeFunction('connections', {
      action: 'storeCredentials',
      provider: 'twilio',
      connectionId: 'ops',
      credentials: { username: account.sid, password: account.token },
    });
    expect(stored).toMatchObject({
      ok: true,
      connection: { provider: 'twilio', connectionId: 'ops', status: 'active' },
    });
    expect(JSON.stringify(stored)).not.toContain(account.token);

    const answer = await local.invoke({ provider: 'twilio', connectionId: 'ops' });
    expect(answer).toMatchObject({ ok: true, tokenType: 'Basic' });
    const check = await fetch(`${apiUrl}/2010-04-01/Accounts/${account.sid}.json`, {
      headers: answer.headers as Record<string, string>,
    });
    expect(check.status).toBe(200);
  });

  it('refuses a missing or undeclared field, and a provider that takes no credentials', async () => {
    expect(
      await local.invokeFunction('connections', {
        action: 'storeCredentials',
        provider: 'twilio',
        connectionId: 'ops2',
        credentials: { username: account.sid },
      }),
    ).toMatchObject({
      ok: false,
      error: { code: 'invalid_request', message: expect.stringContaining('credentials.password') },
    });
    expect(
      await local.invokeFunction('connections', {
        action: 'storeCredentials',
        provider: 'plain',
        connectionId: 'p2',
        credentials: { apiKey: 'x', extra: 'y' },
      }),
    ).toMatchObject({
      ok: false,
      error: { code: 'invalid_request', message: expect.stringContaining('credentials.extra') },
    });
    expect(
      await local.invokeFunction('connections', {
        action: 'storeCredentials',
        provider: 'quiqup',
        connectionId: 'default',
        credentials: { apiKey: 'x' },
      }),
    ).toMatchObject({ ok: false, error: { code: 'invalid_request' } });
  });
});

describe('the landing page', () => {
  it('lists api_key and basic providers with a Connect button (their form)', async () => {
    const html = await (await fetch(`${local.url}/`)).text();
    for (const id of ['sendgrid', 'twilio', 'plain']) {
      expect(html).toContain(`id="connect-${id}"`);
    }
    expect(html).not.toContain('id="connect-quiqup"');
  });
});

describe('credentials entries: configuration', () => {
  it('refuses an entry that would put a secret credential in the verification URL', () => {
    const entry = {
      kind: 'api_key',
      credentialFields: { apiKey: { label: 'API key', secret: true } },
      headers: { 'X-API-Key': '{credentials.apiKey}' },
      apiBaseUrl: 'https://api.example.com',
      verify: {
        method: 'GET',
        url: '{apiBaseUrl}/me?key={credentials.apiKey}',
        expectStatus: [200],
      },
    };
    expect(() => parseConfig({ providers: { leaky: entry } })).toThrow(
      /providers\.leaky.*verify\.url: apiKey is a secret field/,
    );
    // A field that is not secret (an account id) may be in the path, as Twilio's is.
    const account = {
      ...entry,
      credentialFields: { ...entry.credentialFields, account: { label: 'Account', secret: false } },
      verify: { ...entry.verify, url: '{apiBaseUrl}/accounts/{credentials.account}' },
    };
    expect(() => parseConfig({ providers: { fine: account } })).not.toThrow();
  });
});
