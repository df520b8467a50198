import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ScanCommand } from '@aws-sdk/client-dynamodb';
import { DynamoDBDocumentClient, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { parseConfig } from '../shared/config.ts';
import { protocolOf } from '../shared/providers/protocols.ts';
import { hasConsentFlow } from '../shared/providers/types.ts';
import { connectionPk, connectSessionPk } from '../shared/store/table.ts';
import { hashOf } from '../shared/connect/flow-store.ts';
import { TestBrowser } from './helpers/browser.ts';
import { setLoggerLevel, startTestBroker, type TestBroker } from './helpers/local.ts';
import { startOidcProvider, type TestOidcProvider } from './helpers/oidc.ts';

// Complete connect flows over real HTTP: the team's backend creates a connect session through the
// `connections` function, a browser (a cookie jar following redirects by hand) opens it, consents
// on the sandbox provider's own pages, and comes back through our callback route. Every log line
// written meanwhile is kept and checked at the end for anything secret.

const RETURN_TO = 'http://app.test/integrations/done';
const APP_HOST = 'app.test';

let local: TestBroker;
let oidc: TestOidcProvider;
let dataDir: string | undefined;
const logs: string[] = [];
/** Every secret value a flow handled: none may appear in a log line. */
const secrets = new Set<string>();
const restoreOutput: (() => void)[] = [];

beforeAll(async () => {
  // Every level, kept here and off the terminal (the suite logs errors only: vitest.config.ts).
  restoreOutput.push(setLoggerLevel('DEBUG'));
  for (const stream of [process.stdout, process.stderr]) {
    const write = stream.write;
    stream.write = ((chunk: unknown, ...rest: unknown[]) => {
      logs.push(typeof chunk === 'string' ? chunk : Buffer.from(chunk as Uint8Array).toString());
      (rest.find((arg) => typeof arg === 'function') as (() => void) | undefined)?.();
      return true;
    }) as typeof stream.write;
    restoreOutput.push(() => (stream.write = write));
  }
  oidc = await startOidcProvider({ scopes: ['api:read'] });
  // The oauth2 client's credentials go in the secrets file before the broker reads it.
  dataDir = mkdtempSync(join(tmpdir(), 'broker-flows-'));
  const { client_id, client_secret } = oidc.clients.basic;
  writeFileSync(
    join(dataDir, 'secrets.json'),
    JSON.stringify({ acme: { client_id, client_secret } }),
  );
  local = await startTestBroker({
    dataDir,
    config: parseConfig({
      allowedReturnTo: ['http://app.test/integrations/'],
      providers: {
        quidkey: { catalog: 'quidkey', environment: 'sandbox' },
        quicko: { catalog: 'quicko', environment: 'sandbox' },
        // The 100 parallel opens below load this one process: more than the tests' 400 ms default.
        quipt: { catalog: 'quipt', environment: 'sandbox', timeoutMs: 5000 },
        acme: {
          kind: 'oauth2',
          authorizationUrl: oidc.authorizationUrl,
          tokenUrl: oidc.tokenUrl,
          issuer: oidc.issuer,
          scopes: ['openid', 'offline_access', 'api:read'],
          // oidc-provider grants offline_access (a refresh token) only with prompt=consent.
          authorizationParams: { prompt: 'consent' },
        },
      },
    }),
  });
  oidc.allowRedirectUri(`${local.url}/callback/acme`);
  const secretsFile = JSON.parse(
    readFileSync(join(local.dataDir, 'secrets.json'), 'utf8'),
  ) as Record<string, Record<string, string>>;
  for (const entry of Object.values(secretsFile)) {
    for (const [field, value] of Object.entries(entry))
      if (field !== 'client_id') secrets.add(value);
  }
});

afterAll(async () => {
  for (const restore of restoreOutput) restore();
  await local?.close();
  await oidc?.close();
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

type Choice = 'allow' | 'deny';

/**
 * Plays the person at the provider, from its consent URL; returns the URL the provider redirects
 * the browser to (our callback), without fetching it.
 */
type ConsentDriver = (browser: TestBrowser, consentUrl: string, choice: Choice) => Promise<string>;

/** Walks a sandbox provider's pages; `decide` submits them and returns the redirecting answer. */
function sandboxPages(
  decide: (
    browser: TestBrowser,
    page: Response,
    pageUrl: string,
    choice: Choice,
  ) => Promise<Response>,
): ConsentDriver {
  return async (browser, consentUrl, choice) => {
    const { response, url: pageUrl } = await browser.follow(consentUrl);
    const back = await decide(browser, response!, pageUrl, choice);
    expect(back.status).toBe(302);
    return new URL(back.headers.get('location')!, pageUrl).toString();
  };
}

const consentDrivers: Record<string, ConsentDriver> = {
  // A real OAuth 2.0 / OIDC server nobody here wrote, on loopback.
  acme: (browser, consentUrl, choice) =>
    oidc.consent(consentUrl, browser.jar, { decision: choice === 'allow' ? 'approve' : 'deny' }),
  quipt: sandboxPages(async (browser, page, pageUrl, choice) => {
    expect(page.status).toBe(200);
    return browser.submitForm(await page.text(), pageUrl, { decision: choice });
  }),
  quicko: sandboxPages(async (browser, page, pageUrl, choice) => {
    const otpPage = await page.text();
    const otp = /id="otp">(\d+)</.exec(otpPage)?.[1];
    expect(otp).toBeDefined();
    const consent = await browser.submitForm(otpPage, pageUrl, { otp: otp! });
    const consentPage = await consent.text();
    expect(consent.status).toBe(200);
    return browser.submitForm(consentPage, pageUrl, {
      decision: choice === 'allow' ? 'allow' : 'cancel',
    });
  }),
};

/** Callbacks missing what each kind's exchange needs, made from the real one. */
const malformedCallbacks: Record<string, [string, (params: URLSearchParams) => void][]> = {
  quicko: [['no request_token', (params) => params.delete('request_token')]],
  quipt: [['no oauth_verifier', (params) => params.delete('oauth_verifier')]],
  acme: [
    ['a wrong iss', (params) => params.set('iss', 'https://elsewhere.example')],
    ['no iss', (params) => params.delete('iss')],
    ['no code', (params) => params.delete('code')],
  ],
};

/** Each provider's sandbox API, to prove a token (or signed header) works there. */
const apiCheck: Record<string, { url: () => string; sign?: true }> = {
  quicko: { url: () => `${local.url}/sandbox/quicko/me` },
  quipt: { url: () => `${local.url}/sandbox/quipt/v2/me`, sign: true },
  acme: { url: () => `${oidc.issuer}/me` },
};

/** A token request as a service would send it (OAuth 1.0a providers sign a request). */
function tokenRequest(provider: string, connectionId: string) {
  const api = apiCheck[provider]!;
  return {
    provider,
    connectionId,
    ...(api.sign ? { sign: { method: 'GET', url: api.url() } } : {}),
  };
}

async function createSession(
  provider: string,
  connectionId: string,
  returnTo: string | undefined = RETURN_TO,
): Promise<string> {
  const answer = await local.invokeFunction('connections', {
    action: 'createConnectSession',
    provider,
    connectionId,
    ...(returnTo ? { returnTo } : {}),
  });
  expect(answer).toMatchObject({ ok: true });
  const url = answer.url as string;
  secrets.add(new URL(url).searchParams.get('session')!);
  return url;
}

interface StartedFlow {
  browser: TestBrowser;
  /** Our callback URL with the provider's parameters, not yet requested. */
  callbackUrl: string;
}

/** Session → start route → provider consent → the redirect back, stopped before our callback. */
async function startAndConsent(
  provider: string,
  connectionId: string,
  options: { choice?: Choice; returnTo?: string; browser?: TestBrowser } = {},
): Promise<StartedFlow> {
  const browser = options.browser ?? new TestBrowser();
  const sessionUrl = await createSession(provider, connectionId, options.returnTo);
  const start = await browser.request(sessionUrl);
  expect(start.status).toBe(302);
  expect(start.headers.getSetCookie().join()).toMatch(/HttpOnly/i);
  expect(start.headers.getSetCookie().join()).toMatch(/SameSite=Lax/i);
  const consentUrl = new URL(start.headers.get('location')!, sessionUrl).toString();
  const callbackUrl = await consentDrivers[provider]!(
    browser,
    consentUrl,
    options.choice ?? 'allow',
  );
  expect(new URL(callbackUrl).pathname).toBe(`/callback/${provider}`);
  const secretParams = ['state', 'code', 'request_token', 'oauth_token', 'oauth_verifier'];
  for (const [name, value] of new URL(callbackUrl).searchParams) {
    if (secretParams.includes(name)) secrets.add(value);
  }
  return { browser, callbackUrl };
}

async function finish(
  flow: StartedFlow,
): Promise<{ status: number; location?: URL; body: string }> {
  const response = await flow.browser.request(flow.callbackUrl);
  const location = response.headers.get('location');
  return {
    status: response.status,
    ...(location ? { location: new URL(location) } : {}),
    body: await response.text(),
  };
}

async function rememberTokens(provider: string, connectionId: string): Promise<void> {
  const connection = await local.broker.store.get(provider, connectionId);
  for (const value of [
    connection?.tokens.accessToken,
    connection?.tokens.refreshToken,
    connection?.tokens.tokenSecret,
  ]) {
    if (value) secrets.add(value);
  }
}

const userConsentProviders = () =>
  Object.keys(consentDrivers).filter((id) => local.broker.providers.has(id));

describe.each(['quicko', 'quipt', 'acme'])('connect flow: %s', (provider) => {
  it('connects, lands on returnTo with status=connected, and the token works', async () => {
    const flow = await startAndConsent(provider, 'alice');
    const done = await finish(flow);
    expect(done.status).toBe(302);
    expect(done.location?.host).toBe(APP_HOST);
    expect(Object.fromEntries(done.location!.searchParams)).toEqual({
      status: 'connected',
      provider,
      connection_id: 'alice',
    });
    const summary = await local.invokeFunction('connections', {
      action: 'get',
      provider,
      connectionId: 'alice',
    });
    expect(summary).toMatchObject({ ok: true, connection: { status: 'active' } });
    const api = apiCheck[provider]!;
    const token = await local.invoke(tokenRequest(provider, 'alice'));
    expect(token).toMatchObject({ ok: true, provider, connectionId: 'alice' });
    // The sandbox provider's own API accepts what the broker handed out.
    // Signed answers carry the one header; token answers every header the API needs.
    const accepted = await fetch(api.url(), {
      headers: (token.headers as Record<string, string> | undefined) ?? {
        authorization: token.authorization as string,
      },
    });
    expect(accepted.status).toBe(200);
    await rememberTokens(provider, 'alice');
    expect(userConsentProviders()).toContain(provider);
  });

  it('a replayed callback is refused with a 400 page and changes nothing', async () => {
    const flow = await startAndConsent(provider, 'replay');
    expect((await finish(flow)).status).toBe(302);
    const before = await local.broker.store.get(provider, 'replay');
    const again = await finish(flow);
    expect(again.status).toBe(400);
    expect(again.body).toMatch(/unknown or was already completed/);
    const after = await local.broker.store.get(provider, 'replay');
    expect(after?.version).toBe(before?.version);
    await rememberTokens(provider, 'replay');
  });

  it('another browser (no cookie, or a wrong one) cannot complete the flow; the right one still can', async () => {
    const flow = await startAndConsent(provider, 'bound');
    const stranger = new TestBrowser();
    const refused = await stranger.request(flow.callbackUrl);
    expect(refused.status).toBe(400);
    expect(await refused.text()).toMatch(/did not start this connection/);
    const name = (await flow.browser.jar.getCookies(flow.callbackUrl))[0]!.key;
    await stranger.jar.setCookie(`${name}=forged-value-forged-value-forged`, flow.callbackUrl);
    expect((await stranger.request(flow.callbackUrl)).status).toBe(400);
    expect(await local.broker.store.get(provider, 'bound')).toBeUndefined();
    const done = await finish(flow);
    expect(done.location?.searchParams.get('status')).toBe('connected');
    await rememberTokens(provider, 'bound');
  });

  it.each(malformedCallbacks[provider]!)(
    'a callback with %s is refused (400) before its flow is consumed; the real one still completes',
    async (_name, malform) => {
      const flow = await startAndConsent(provider, 'malformed');
      const url = new URL(flow.callbackUrl);
      malform(url.searchParams);
      const refused = await flow.browser.request(url.toString());
      expect(refused.status).toBe(400);
      expect(await refused.text()).toMatch(/callback carried (no|another)/);
      expect(await local.broker.store.get(provider, 'malformed')).toBeUndefined();
      const done = await finish(flow);
      expect(done.location?.searchParams.get('status')).toBe('connected');
      await rememberTokens(provider, 'malformed');
      await local.invokeFunction('connections', {
        action: 'delete',
        provider,
        connectionId: 'malformed',
      });
    },
  );

  it('an expired flow is refused and nothing is stored', async () => {
    const flow = await startAndConsent(provider, 'late');
    local.clock.advance(local.broker.config.connect.flowTtlSeconds + 1);
    const done = await finish(flow);
    expect(done.status).toBe(400);
    expect(done.body).toMatch(/expired/);
    expect(await local.broker.store.get(provider, 'late')).toBeUndefined();
  });

  it('a tampered state finds no flow: 400, nothing stored', async () => {
    const flow = await startAndConsent(provider, 'tampered');
    const url = new URL(flow.callbackUrl);
    // Every kind's callback carries our state (OAuth 1.0a and Quicko: inside the callback URL).
    url.searchParams.set('state', `${url.searchParams.get('state')}x`);
    const tampered = await flow.browser.request(url.toString());
    expect(tampered.status).toBe(400);
    expect(await local.broker.store.get(provider, 'tampered')).toBeUndefined();
  });

  it('the person declines: returnTo gets status=error&error=access_denied, nothing stored', async () => {
    const flow = await startAndConsent(provider, 'declined', { choice: 'deny' });
    const done = await finish(flow);
    expect(done.status).toBe(302);
    expect(Object.fromEntries(done.location!.searchParams)).toEqual({
      status: 'error',
      error: 'access_denied',
      provider,
      connection_id: 'declined',
    });
    expect(await local.broker.store.get(provider, 'declined')).toBeUndefined();
  });

  it('connecting again revives a needs_reauth connection with fresh tokens', async () => {
    await finish(await startAndConsent(provider, 'revive'));
    const connected = await local.broker.store.get(provider, 'revive');
    const holder = 'test-holder';
    const leased = await local.broker.store.acquireLease(
      connected!,
      holder,
      local.clock.now(),
      30_000,
    );
    await local.broker.store.recordFailure(
      leased,
      holder,
      { error: { code: 'provider_rejected', message: 'revoked' }, needsReauth: true },
      local.clock.now(),
    );
    expect(await local.invoke(tokenRequest(provider, 'revive'))).toMatchObject({
      ok: false,
      error: { code: 'needs_reauth' },
    });
    const done = await finish(await startAndConsent(provider, 'revive'));
    expect(done.location?.searchParams.get('status')).toBe('connected');
    const revived = await local.broker.store.get(provider, 'revive');
    expect(revived).toMatchObject({ status: 'active', refreshFailures: 0 });
    expect(revived!.tokens.accessToken).not.toBe(connected!.tokens.accessToken);
    expect(await local.invoke(tokenRequest(provider, 'revive'))).toMatchObject({ ok: true });
    await rememberTokens(provider, 'revive');
  });

  it('without returnTo, a small page says what happened', async () => {
    const flow = await startAndConsent(provider, 'no-return', { returnTo: '' });
    const done = await finish(flow);
    expect(done.status).toBe(200);
    expect(done.body).toMatch(/Connected/);
    await rememberTokens(provider, 'no-return');
  });
});

describe('connect flow over a connection whose tokens cannot be decrypted', () => {
  it('a new consent replaces them (written at their version, read without decrypting)', async () => {
    await finish(await startAndConsent('quicko', 'garbled'));
    const db = DynamoDBDocumentClient.from(local.dynamo);
    // As an item restored under another key would look: a ciphertext this key cannot open.
    await db.send(
      new UpdateCommand({
        TableName: local.tableName,
        Key: { pk: connectionPk('quicko', 'garbled') },
        UpdateExpression: 'SET tokens = :garbage',
        ExpressionAttributeValues: { ':garbage': 'v1.AAAA.AAAA.AAAA' },
      }),
    );
    // internal_error: the invocation fails (Lambda's error report), so the Errors alarm sees it.
    expect(await local.invoke({ provider: 'quicko', connectionId: 'garbled' })).toMatchObject({
      errorType: 'BrokerInternalError',
    });
    const done = await finish(await startAndConsent('quicko', 'garbled'));
    expect(done.location?.searchParams.get('status')).toBe('connected');
    expect(await local.invoke({ provider: 'quicko', connectionId: 'garbled' })).toMatchObject({
      ok: true,
    });
    await rememberTokens('quicko', 'garbled');
  });
});

describe('connect sessions and routes: refusals', () => {
  it('a connect session works once', async () => {
    const url = await createSession('quicko', 'once');
    const browser = new TestBrowser();
    expect((await browser.request(url)).status).toBe(302);
    const again = await new TestBrowser().request(url);
    expect(again.status).toBe(400);
    expect(await again.text()).toMatch(/unknown, already used or expired/);
  });

  it('an expired connect session is refused', async () => {
    const url = await createSession('quicko', 'stale');
    local.clock.advance(local.broker.config.connect.sessionTtlSeconds + 1);
    expect((await new TestBrowser().request(url)).status).toBe(400);
  });

  it('a session for one provider does not open another', async () => {
    const url = new URL(await createSession('quicko', 'cross'));
    url.pathname = '/connect/quidkey';
    expect((await new TestBrowser().request(url.toString())).status).toBe(400);
  });

  it('returnTo outside the allowlist is refused when the session is created', async () => {
    for (const returnTo of ['https://evil.test/', 'http://app.test.evil.net/integrations/x']) {
      const answer = await local.invokeFunction('connections', {
        action: 'createConnectSession',
        provider: 'quicko',
        connectionId: 'x',
        returnTo,
      });
      expect(answer).toMatchObject({ ok: false, error: { code: 'invalid_request' } });
      expect(JSON.stringify(answer)).toMatch(/returnTo/);
    }
  });

  it.each([
    ['/connect/nope?session=abcdefghijklmnopqrstuvwxyz', 400],
    ['/callback/nope?state=abc&code=xyz', 400],
    ['/connect/quicko', 400],
    ['/connect/quicko?session=short', 400],
    ['/callback/quicko', 400],
    ['/callback/quicko?state=', 400],
    ['/callback/quicko?state=a&state=b&request_token=c', 400],
  ])('GET %s → %i page, no 5xx', async (path, status) => {
    const response = await new TestBrowser().request(`${local.url}${path}`);
    expect(response.status).toBe(status);
    expect(response.headers.get('content-type')).toMatch(/text\/html/);
    expect(response.headers.get('cache-control')).toBe('no-store');
    expect(response.headers.get('referrer-policy')).toBe('no-referrer');
  });
});

describe('connect flow: an OAuth 1.0a denial without oauth_token', () => {
  afterEach(() => {
    local.sandboxes.quipt.denialCarriesToken = true;
  });

  it('finds its flow by our state and lands on returnTo with status=error&error=access_denied', async () => {
    // OAuth problem reporting lets the provider send oauth_problem=user_refused alone.
    local.sandboxes.quipt.denialCarriesToken = false;
    const flow = await startAndConsent('quipt', 'refused-bare', { choice: 'deny' });
    const sent = new URL(flow.callbackUrl).searchParams;
    expect(sent.has('oauth_token')).toBe(false);
    expect(sent.get('oauth_problem')).toBe('user_refused');
    const done = await finish(flow);
    expect(done.status).toBe(302);
    expect(done.location?.host).toBe(APP_HOST);
    expect(Object.fromEntries(done.location!.searchParams)).toEqual({
      status: 'error',
      error: 'access_denied',
      provider: 'quipt',
      connection_id: 'refused-bare',
    });
    expect(await local.broker.store.get('quipt', 'refused-bare')).toBeUndefined();
    // The flow was consumed: the same callback again finds nothing.
    expect((await finish(flow)).status).toBe(400);
  });
});

/** Flow items in the table (a Scan: tests only). */
async function flowItemCount(): Promise<number> {
  let count = 0;
  let startKey: Record<string, never> | undefined;
  do {
    const page = await local.dynamo.send(
      new ScanCommand({
        TableName: local.tableName,
        FilterExpression: 'begins_with(pk, :flow)',
        ExpressionAttributeValues: { ':flow': { S: 'flow#' } },
        Select: 'COUNT',
        ...(startKey ? { ExclusiveStartKey: startKey } : {}),
      }),
    );
    count += page.Count ?? 0;
    startKey = page.LastEvaluatedKey as typeof startKey;
  } while (startKey);
  return count;
}

/** Provider calls the sandbox has answered so far, per endpoint, as `npm start` serves them. */
async function sandboxCalls(kind: string, endpoint: string): Promise<number> {
  const stats = (await (await fetch(`${local.url}/sandbox/_stats`)).json()) as Record<
    string,
    Record<string, number>
  >;
  return stats[kind]?.[endpoint] ?? 0;
}

describe('connect sessions: one start per link', () => {
  it('100 parallel opens of one link make 1 provider call and 1 flow; the others get a 400 page', async () => {
    const url = await createSession('quipt', 'parallel');
    const callsBefore = await sandboxCalls('quipt', 'initiate');
    const flowsBefore = await flowItemCount();
    const answers = await Promise.all(
      Array.from({ length: 100 }, async () => {
        const response = await new TestBrowser().request(url);
        return { status: response.status, body: await response.text() };
      }),
    );
    expect(answers.filter((a) => a.status === 302)).toHaveLength(1);
    const refused = answers.filter((a) => a.status !== 302);
    expect(refused).toHaveLength(99);
    for (const answer of refused) {
      expect(answer.status, answer.body.replace(/<[^>]*>/g, ' ').slice(-300)).toBe(400);
      expect(answer.body).toMatch(/already being used in another request|already used/);
    }
    expect(await sandboxCalls('quipt', 'initiate')).toBe(callsBefore + 1);
    expect(await flowItemCount()).toBe(flowsBefore + 1);
  });

  it('a provider failure while starting leaves the link usable, at once', async () => {
    const url = await createSession('quipt', 'retry-start');
    const sandbox = local.sandboxes.quipt;
    const callsBefore = await sandboxCalls('quipt', 'initiate');
    const flowsBefore = await flowItemCount();
    sandbox.fault = { type: 'status', status: 503 };
    let failed: Response;
    try {
      failed = await new TestBrowser().request(url);
    } finally {
      sandbox.fault = undefined;
    }
    expect(failed.status).toBe(502);
    expect(await failed.text()).toMatch(/not answering/);
    expect(await flowItemCount()).toBe(flowsBefore);
    // The claim was given back: the same link opens now, without waiting for the claim to lapse.
    const browser = new TestBrowser();
    const start = await browser.request(url);
    expect(start.status).toBe(302);
    expect(await sandboxCalls('quipt', 'initiate')).toBe(callsBefore + 2);
    expect(await flowItemCount()).toBe(flowsBefore + 1);
    // And that flow completes.
    const consentUrl = new URL(start.headers.get('location')!, url).toString();
    const callbackUrl = await consentDrivers.quipt!(browser, consentUrl, 'allow');
    const done = await finish({ browser, callbackUrl });
    expect(done.location?.searchParams.get('status')).toBe('connected');
    await rememberTokens('quipt', 'retry-start');
  });

  it('a start that died holding the link frees it once its claim lapses', async () => {
    const url = await createSession('quipt', 'lapsed-claim');
    const token = new URL(url).searchParams.get('session')!;
    // As a start that crashed after its claim would leave the session: claimed, never released.
    await DynamoDBDocumentClient.from(local.dynamo).send(
      new UpdateCommand({
        TableName: local.tableName,
        Key: { pk: connectSessionPk(hashOf(token)) },
        UpdateExpression: 'SET claimedBy = :crashed, claimExpiresAt = :until',
        ExpressionAttributeValues: {
          ':crashed': 'crashed-start',
          ':until': local.clock.now() + 15_000,
        },
      }),
    );
    const busy = await new TestBrowser().request(url);
    expect(busy.status).toBe(400);
    expect(await busy.text()).toMatch(/already being used in another request/);
    local.clock.advance(16);
    expect((await new TestBrowser().request(url)).status).toBe(302);
  });
});

describe('no secret in any log line', () => {
  it('the logs of every flow above hold no token, secret, code, verifier or request token', () => {
    const text = logs.join('');
    expect(text.length).toBeGreaterThan(0);
    expect(secrets.size).toBeGreaterThan(10);
    for (const secret of secrets) {
      if (secret.length < 8 || !text.includes(secret)) continue;
      const at = text.indexOf(secret);
      const line = text.slice(text.lastIndexOf('\n', at) + 1, text.indexOf('\n', at));
      expect.fail(`a secret is in a log line: ${line.replace(secret, '<SECRET>').slice(0, 400)}`);
    }
  });
});

// Every driver here must drive a configured provider of a registered kind, or it tests nothing.
it('every consent driver here drives a configured provider of a registered kind', () => {
  for (const id of Object.keys(consentDrivers)) {
    expect(hasConsentFlow(protocolOf(local.broker.config.providers[id]!))).toBe(true);
  }
});
