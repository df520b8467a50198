import { randomBytes } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { TokenBrokerClient } from '../shared/client/index.ts';
import { parseConfig } from '../shared/config.ts';
import {
  AccessDeniedError,
  InvalidRequestError,
  ProviderRejectedError,
  ProviderUnavailableError,
} from '../shared/errors.ts';
import type { OAuth1Config } from '../shared/providers/config/oauth1.ts';
import { oauth1ApiBaseUrl } from '../shared/providers/oauth1.ts';
import type { ResolvedProvider } from '../shared/providers/resolve.ts';
import type { ProviderContext, TokenSet } from '../shared/providers/types.ts';
import { startTestBroker, type TestBroker } from './helpers/local.ts';

// Quipt (the catalog's oauth1 entry: OAuth 1.0a, HMAC-SHA1) against the sandbox Quipt over real HTTP. The sandbox
// verifies every signature with its own RFC 5849 code, so a 200 means the broker signed right.
let local: TestBroker;
let quipt: ResolvedProvider;
let ctx: ProviderContext<OAuth1Config>;
let callbackUrl: string;
let apiBase: string;
let consumerSecret: string;

beforeAll(async () => {
  local = await startTestBroker({
    config: parseConfig({
      allowedReturnTo: ['http://localhost/'],
      providers: {
        quipt: { catalog: 'quipt', environment: 'sandbox' },
        quiqup: { catalog: 'quiqup', environment: 'sandbox' },
      },
    }),
  });
  quipt = local.broker.providers.get('quipt')!;
  ctx = quipt.context as unknown as ProviderContext<OAuth1Config>;
  callbackUrl = `${local.url}/callback/quipt`;
  apiBase = oauth1ApiBaseUrl(ctx);
  consumerSecret = (await ctx.secret()).consumer_secret!;
});
afterAll(() => local.close());
afterEach(() => {
  sandbox().fault = undefined;
  sandbox().credentialsContentType = 'application/x-www-form-urlencoded';
});

const sandbox = () => local.sandboxes.quipt;
const kind = () => {
  const protocol = quipt.kind;
  if (protocol.variant !== 'request-signing') throw new Error('quipt signs requests');
  return protocol;
};
const newState = () => randomBytes(16).toString('base64url');

/**
 * A person at the sandbox authorize page: opens it, presses Allow or Deny. Returns where the
 * sandbox sends the browser back (not followed) and that redirect's query parameters.
 */
async function authorizeAt(
  authorizationUrl: string,
  decision: 'allow' | 'deny',
): Promise<{ location: URL; params: Record<string, string> }> {
  const page = await fetch(authorizationUrl);
  expect(page.status).toBe(200);
  expect(page.headers.get('content-type')).toMatch(/^text\/html/);
  const html = await page.text();
  expect(html).not.toMatch(/<script/i);
  const action = /<form method="post" action="([^"]+)"/.exec(html)?.[1];
  const token = /name="oauth_token" value="([^"]+)"/.exec(html)?.[1];
  expect(html).toContain(`value="${decision}"`);
  if (!action || !token) throw new Error(`no form in page: ${html}`);
  const answer = await fetch(action.replaceAll('&amp;', '&'), {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ oauth_token: token.replaceAll('&amp;', '&'), decision }).toString(),
    redirect: 'manual',
  });
  expect(answer.status).toBe(302);
  const location = new URL(answer.headers.get('location')!);
  return { location, params: Object.fromEntries(location.searchParams) };
}

/** Start → Allow → the callback's parameters and the flow secrets the core would keep. */
async function consentedCallback() {
  const state = newState();
  const started = await kind().startConsent!(ctx, { callbackUrl, state });
  const { location, params } = await authorizeAt(started.authorizationUrl, 'allow');
  return { state, started, location, params };
}

async function connect(): Promise<TokenSet> {
  const { state, started, params } = await consentedCallback();
  return kind().completeConsent!(ctx, {
    params,
    callbackUrl,
    state,
    flowSecrets: started.flowSecrets!,
  });
}

async function failure(promise: Promise<unknown>): Promise<Error> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!(error instanceof Error)) throw new Error('expected a failure');
  return error;
}

describe('Quipt consent (OAuth 1.0a three-legged)', () => {
  it('initiates, authorizes in the sandbox page, exchanges, and signs API calls the sandbox accepts', async () => {
    const before = {
      initiate: sandbox().callCount('initiate'),
      token: sandbox().callCount('token'),
    };
    const state = newState();
    const started = await kind().startConsent!(ctx, { callbackUrl, state });

    // The sandbox's authorize page at a real path (the real one is behind "#/").
    const authorizationUrl = new URL(started.authorizationUrl);
    expect(`${authorizationUrl.origin}${authorizationUrl.pathname}`).toBe(
      `${local.url}/sandbox/quipt/oauth/authorizing`,
    );
    const requestToken = authorizationUrl.searchParams.get('oauth_token')!;
    expect(started.flowSecrets?.requestToken).toBe(requestToken);
    expect(started.flowSecrets?.requestTokenSecret).toEqual(expect.any(String));
    expect(started.authorizationUrl).not.toContain(started.flowSecrets!.requestTokenSecret);
    // Our state rides in the callback URL: the callback finds its flow by it, denial or not.
    expect(started.callbackUrl).toBe(`${callbackUrl}?state=${state}`);

    const { location, params } = await authorizeAt(started.authorizationUrl, 'allow');
    expect(`${location.origin}${location.pathname}`).toBe(callbackUrl);
    expect(params.state).toBe(state);
    expect(params.oauth_token).toBe(requestToken);
    expect(params.oauth_verifier).toEqual(expect.any(String));

    const tokens = await kind().completeConsent!(ctx, {
      params,
      callbackUrl,
      state,
      flowSecrets: started.flowSecrets!,
    });
    expect(tokens).toEqual({
      accessToken: expect.any(String),
      tokenSecret: expect.any(String),
      tokenType: 'OAuth',
    });
    expect(tokens.expiresAt).toBeUndefined();
    expect(tokens.accessToken).not.toBe(requestToken);
    expect(sandbox().callCount('initiate')).toBe(before.initiate + 1);
    expect(sandbox().callCount('token')).toBe(before.token + 1);

    const url = `${apiBase}/me`;
    const authorization = await kind().sign!(ctx, tokens, { method: 'GET', url });
    expect(authorization).toMatch(/^OAuth /);
    expect(authorization).toContain(`oauth_token="${encodeURIComponent(tokens.accessToken)}"`);
    expect(authorization).not.toContain(tokens.tokenSecret!);
    expect(authorization).not.toContain(encodeURIComponent(consumerSecret));
    const me = await fetch(url, { headers: { authorization } });
    expect(me.status).toBe(200);
    expect(await me.json()).toMatchObject({ consumer_key: (await ctx.secret()).consumer_key });
  });

  it('signs query and form-body parameters, repeated and encoded ones included', async () => {
    const tokens = await connect();
    const url = `${apiBase}/me?tag=b&tag=a&name=J%C3%BCrgen%20%2B%20co&empty=`;
    const body = 'tag=c&note=50%25+off&tag=a';
    const authorization = await kind().sign!(ctx, tokens, { method: 'POST', url, body });
    const me = await fetch(url, {
      method: 'POST',
      headers: { authorization, 'content-type': 'application/x-www-form-urlencoded' },
      body,
    });
    expect(me.status).toBe(200);

    // The signature covers exactly that request: another body or URL is refused.
    const again = await kind().sign!(ctx, tokens, { method: 'POST', url, body });
    const otherBody = await fetch(url, {
      method: 'POST',
      headers: { authorization: again, 'content-type': 'application/x-www-form-urlencoded' },
      body: 'tag=c&note=60%25+off&tag=a',
    });
    expect(otherBody.status).toBe(401);
    const third = await kind().sign!(ctx, tokens, { method: 'GET', url: `${apiBase}/me?x=1` });
    const otherUrl = await fetch(`${apiBase}/me?x=2`, { headers: { authorization: third } });
    expect(otherUrl.status).toBe(401);
    expect(await otherUrl.json()).toEqual({ error: 'signature_invalid' });
  });

  it('refuses a tampered signature, a replayed header and a wrong token secret at the API', async () => {
    const tokens = await connect();
    const url = `${apiBase}/me`;
    const authorization = await kind().sign!(ctx, tokens, { method: 'GET', url });
    const tampered = authorization.replace(
      /oauth_signature="([^"]+)"/,
      (_, value: string) =>
        `oauth_signature="${value.startsWith('A') ? 'B' : 'A'}${value.slice(1)}"`,
    );
    expect(tampered).not.toBe(authorization);
    const refused = await fetch(url, { headers: { authorization: tampered } });
    expect(refused.status).toBe(401);
    expect(await refused.json()).toEqual({ error: 'signature_invalid' });

    expect((await fetch(url, { headers: { authorization } })).status).toBe(200);
    // RFC 5849 §3.2: a nonce is good for one request.
    const replayed = await fetch(url, { headers: { authorization } });
    expect(replayed.status).toBe(401);
    expect(await replayed.json()).toEqual({ error: 'nonce_used' });

    const wrongSecret = await kind().sign!(
      ctx,
      { ...tokens, tokenSecret: 'not-the-secret' },
      { method: 'GET', url },
    );
    expect((await fetch(url, { headers: { authorization: wrongSecret } })).status).toBe(401);
  });

  it('a wrong consumer secret fails initiate at the sandbox: provider_rejected', async () => {
    const secret = await ctx.secret();
    const wrong: ProviderContext<OAuth1Config> = {
      ...ctx,
      secret: async () => ({ ...secret, consumer_secret: 'tampered' }),
    };
    const error = await failure(kind().startConsent!(wrong, { callbackUrl, state: newState() }));
    expect(error).toBeInstanceOf(ProviderRejectedError);
    expect(error).toMatchObject({ status: 401 });
    expect(error.message).toBe('The quipt request token call was refused (HTTP 401).');
  });

  it('a wrong request-token secret fails the exchange: provider_rejected', async () => {
    const { state, started, params } = await consentedCallback();
    const error = await failure(
      kind().completeConsent!(ctx, {
        params,
        callbackUrl,
        state,
        flowSecrets: { ...started.flowSecrets, requestTokenSecret: 'tampered' },
      }),
    );
    expect(error).toBeInstanceOf(ProviderRejectedError);
    expect(error).toMatchObject({ status: 401 });
    expectNoSecretIn(error.message, params);
  });

  it('refuses a request token used twice', async () => {
    const { state, started, params } = await consentedCallback();
    const input = { params, callbackUrl, state, flowSecrets: started.flowSecrets! };
    await kind().completeConsent!(ctx, input);
    const error = await failure(kind().completeConsent!(ctx, input));
    expect(error).toBeInstanceOf(ProviderRejectedError);
    expect(error).toMatchObject({ status: 401 });
    expectNoSecretIn(error.message, params);
  });

  it('refuses a wrong verifier, and the request token is spent by the attempt', async () => {
    const { state, started, params } = await consentedCallback();
    const input = { callbackUrl, state, flowSecrets: started.flowSecrets! };
    const wrong = await failure(
      kind().completeConsent!(ctx, { ...input, params: { ...params, oauth_verifier: 'guess' } }),
    );
    expect(wrong).toBeInstanceOf(ProviderRejectedError);
    const right = await failure(kind().completeConsent!(ctx, { ...input, params }));
    expect(right).toBeInstanceOf(ProviderRejectedError);
  });

  it('Deny ends in AccessDeniedError, without a token call', async () => {
    const state = newState();
    const started = await kind().startConsent!(ctx, { callbackUrl, state });
    const { params } = await authorizeAt(started.authorizationUrl, 'deny');
    expect(params).toEqual({
      state,
      oauth_token: started.flowSecrets!.requestToken,
      oauth_problem: 'user_refused',
    });
    const tokenCalls = sandbox().callCount('token');
    const error = await failure(
      kind().completeConsent!(ctx, {
        params,
        callbackUrl,
        state,
        flowSecrets: started.flowSecrets!,
      }),
    );
    expect(error).toBeInstanceOf(AccessDeniedError);
    expect(sandbox().callCount('token')).toBe(tokenCalls);
    // The page was answered: it cannot be allowed afterwards.
    expect((await fetch(started.authorizationUrl)).status).toBe(400);
  });

  it('treats any oauth_problem or denied as a refusal, and a malformed callback as invalid', async () => {
    const input = {
      callbackUrl,
      state: 's',
      flowSecrets: { requestToken: 't', requestTokenSecret: 'x' },
    };
    await expect(
      kind().completeConsent!(ctx, { ...input, params: { oauth_token: 't', oauth_problem: 'x' } }),
    ).rejects.toBeInstanceOf(AccessDeniedError);
    await expect(
      kind().completeConsent!(ctx, { ...input, params: { denied: 't' } }),
    ).rejects.toBeInstanceOf(AccessDeniedError);
    // A callback whose oauth_token is not this attempt's request token is refused.
    const otherToken = await failure(
      kind().completeConsent!(ctx, {
        ...input,
        params: { oauth_token: 'u', oauth_verifier: 'v' },
      }),
    );
    expect(otherToken).toBeInstanceOf(InvalidRequestError);
    expect(otherToken.message).toContain('another request token');
    const noVerifier = await failure(
      kind().completeConsent!(ctx, { ...input, params: { oauth_token: 't' } }),
    );
    expect(noVerifier).toBeInstanceOf(InvalidRequestError);
    expect(noVerifier.message).toContain('oauth_verifier');
    await expect(
      kind().completeConsent!(ctx, { ...input, params: { oauth_verifier: 'v' } }),
    ).rejects.toBeInstanceOf(InvalidRequestError);
  });

  it('reads the credentials as form-encoded whatever their Content-Type', async () => {
    sandbox().credentialsContentType = 'application/json';
    const tokens = await connect();
    const url = `${apiBase}/me`;
    const authorization = await kind().sign!(ctx, tokens, { method: 'GET', url });
    expect((await fetch(url, { headers: { authorization } })).status).toBe(200);
  });

  it('classifies initiate failures and does not repeat the call', async () => {
    const start = () => kind().startConsent!(ctx, { callbackUrl, state: newState() });
    const count = () => sandbox().callCount('initiate');

    sandbox().fault = { type: 'status', status: 503 };
    let before = count();
    expect(await failure(start())).toBeInstanceOf(ProviderUnavailableError);
    expect(count()).toBe(before + 1);

    sandbox().fault = { type: 'garbage' };
    before = count();
    expect(await failure(start())).toBeInstanceOf(ProviderUnavailableError);
    expect(count()).toBe(before + 1);

    // §2.1: no oauth_callback_confirmed=true, no OAuth 1.0a.
    sandbox().fault = { type: 'status', status: 200, body: 'oauth_token=a&oauth_token_secret=b' };
    const unconfirmed = await failure(start());
    expect(unconfirmed).toBeInstanceOf(ProviderRejectedError);
    expect(unconfirmed.message).toContain('did not confirm the callback');

    sandbox().fault = { type: 'status', status: 200, body: 'oauth_problem=consumer_key_rejected' };
    expect(await failure(start())).toMatchObject({
      code: 'provider_rejected',
      providerCode: 'consumer_key_rejected',
    });
  });
});

describe('Quipt configuration (catalog data)', () => {
  const entry = (overrides: Record<string, unknown>) =>
    parseConfig({ providers: { quipt: { catalog: 'quipt', ...overrides } } }).providers
      .quipt as OAuth1Config;

  it('production: the documented authorize page (behind #/), OAuth host and API', () => {
    const production = entry({ environment: 'production' });
    expect(production).toMatchObject({
      kind: 'oauth1',
      signatureMethod: 'HMAC-SHA1',
      requestTokenUrl: '{baseUrl}/oauth/initiate',
      authorizeUrl: '{baseUrl}/#/oauth/authorizing?oauth_token={oauth_token}',
      accessTokenUrl: '{baseUrl}/oauth/token',
      apiBaseUrl: 'https://api.getquipt.com/v2',
    });
    expect(production.environments?.production).toBe('https://app.getquipt.com');
    expect(
      oauth1ApiBaseUrl({ ...ctx, config: production, baseUrl: 'https://app.getquipt.com' }),
    ).toBe('https://api.getquipt.com/v2');
  });

  it('sandbox: its own page at a real path and its own API, from the entry’s environmentOverrides', () => {
    expect(ctx.config.authorizeUrl).toBe('{baseUrl}/oauth/authorizing?oauth_token={oauth_token}');
    expect(oauth1ApiBaseUrl(ctx)).toBe(`${ctx.baseUrl}/v2`);
    // The entry's own fields win over the environment's.
    expect(
      entry({ environment: 'sandbox', apiBaseUrl: 'https://api.example/v3/' }).apiBaseUrl,
    ).toBe('https://api.example/v3/');
  });

  it('validates the entry', () => {
    const parse = (overrides: Record<string, unknown>) => () =>
      entry({ environment: 'production', ...overrides });
    expect(parse({})).not.toThrow();
    expect(parse({ authorizeUrl: 'https://x.example/authorize' })).toThrow(
      /providers\.quipt\.authorizeUrl/,
    );
    expect(parse({ apiBaseUrl: 'ftp://x' })).toThrow(/apiBaseUrl/);
    expect(parse({ signatureMethod: 'PLAINTEXT' })).toThrow(/signatureMethod/);
    expect(parse({ environment: 'staging' })).toThrow(/environment/);
  });
});

describe('the token function for an OAuth 1.0a provider', () => {
  const connectionId = () => `user-${randomBytes(4).toString('hex')}`;

  async function storedConnection(): Promise<{ id: string; tokens: TokenSet }> {
    const tokens = await connect();
    const id = connectionId();
    await local.broker.store.create('quipt', id, tokens, local.clock.now());
    return { id, tokens };
  }

  it('answers the signed header for exactly the requested call, and no secret', async () => {
    const { id, tokens } = await storedConnection();
    const url = `${apiBase}/me?page=2`;
    const answer = await local.invoke({
      provider: 'quipt',
      connectionId: id,
      sign: { method: 'GET', url },
    });
    expect(answer).toEqual({
      ok: true,
      provider: 'quipt',
      connectionId: id,
      tokenType: 'OAuth',
      authorization: expect.stringMatching(/^OAuth /),
    });
    const text = JSON.stringify(answer);
    expect(text).not.toContain(tokens.tokenSecret!);
    expect(text).not.toContain(consumerSecret);
    expect(text).not.toContain(encodeURIComponent(consumerSecret));
    expect(answer).not.toHaveProperty('accessToken');

    const me = await fetch(url, { headers: { authorization: answer.authorization as string } });
    expect(me.status).toBe(200);
  });

  it('signs only requests to the provider API: another host, or a look-alike, is refused', async () => {
    const { id } = await storedConnection();
    for (const url of [
      'https://evil.example/v2/me',
      `${new URL(apiBase).origin}.evil.example/v2/me`,
      `${new URL(apiBase).origin}/oauth/token`,
      `http://user@${new URL(apiBase).host}/v2/me`,
    ]) {
      const answer = await local.invoke({
        provider: 'quipt',
        connectionId: id,
        sign: { method: 'GET', url },
      });
      expect(answer).toMatchObject({ ok: false, error: { code: 'invalid_request' } });
      expect((answer.error as { message: string }).message).toMatch(/sign\.url/);
    }
  });

  it('signs a form body', async () => {
    const { id } = await storedConnection();
    const url = `${apiBase}/me`;
    const body = 'a=1&a=2&b=x+y';
    const answer = await local.invoke({
      provider: 'quipt',
      connectionId: id,
      sign: { method: 'POST', url, body },
    });
    const me = await fetch(url, {
      method: 'POST',
      headers: {
        authorization: answer.authorization as string,
        'content-type': 'application/x-www-form-urlencoded',
      },
      body,
    });
    expect(me.status).toBe(200);
  });

  it('refuses sign for a bearer provider, a missing sign, forceRefresh and bad requests', async () => {
    const { id } = await storedConnection();
    const url = `${apiBase}/me`;
    const refusal = async (payload: unknown) => {
      const answer = await local.invoke(payload);
      expect(answer.ok).toBe(false);
      return answer.error as { code: string; message: string };
    };

    expect(await refusal({ provider: 'quiqup', sign: { method: 'GET', url } })).toMatchObject({
      code: 'invalid_request',
      message: expect.stringContaining('only for OAuth 1.0a'),
    });
    expect(await refusal({ provider: 'quipt', connectionId: id })).toMatchObject({
      code: 'invalid_request',
      message: expect.stringContaining('pass sign'),
    });
    expect(
      await refusal({
        provider: 'quipt',
        connectionId: id,
        forceRefresh: true,
        sign: { method: 'GET', url },
      }),
    ).toMatchObject({ code: 'invalid_request', message: expect.stringContaining('forceRefresh') });
    // The connection is untouched by the refused forceRefresh.
    expect((await local.broker.store.get('quipt', id))?.status).toBe('active');

    const secretUrl = `${apiBase}/me?oauth_token=s3cr3t-value`;
    const withOAuthParam = await refusal({
      provider: 'quipt',
      connectionId: id,
      sign: { method: 'GET', url: secretUrl },
    });
    expect(withOAuthParam.code).toBe('invalid_request');
    expect(withOAuthParam.message).not.toContain('s3cr3t');
    expect(
      await refusal({
        provider: 'quipt',
        connectionId: id,
        sign: { method: 'GET', url: 'ftp://x' },
      }),
    ).toMatchObject({ code: 'invalid_request', message: expect.stringContaining('sign.url') });
    expect(
      await refusal({
        provider: 'quipt',
        connectionId: id,
        sign: { method: 'GET', url, extra: 1 },
      }),
    ).toMatchObject({ code: 'invalid_request' });
    expect(
      await refusal({ provider: 'quipt', connectionId: 'nobody', sign: { method: 'GET', url } }),
    ).toMatchObject({ code: 'not_found' });
  });

  it('TokenBrokerClient.sign gets a fresh header for every call', async () => {
    const { id } = await storedConnection();
    const client = new TokenBrokerClient({ lambda: local.lambda });
    const url = `${apiBase}/me`;
    const first = await client.sign({ provider: 'quipt', connectionId: id, method: 'GET', url });
    const second = await client.sign({ provider: 'quipt', connectionId: id, method: 'GET', url });
    expect(first).toEqual({
      provider: 'quipt',
      connectionId: id,
      tokenType: 'OAuth',
      authorization: expect.stringMatching(/^OAuth /),
    });
    expect(second.authorization).not.toBe(first.authorization);
    for (const { authorization } of [first, second]) {
      expect((await fetch(url, { headers: { authorization } })).status).toBe(200);
    }
    await expect(
      client.sign({ provider: 'quiqup', connectionId: 'default', method: 'GET', url }),
    ).rejects.toMatchObject({ name: 'TokenBrokerError', code: 'invalid_request' });
  });
});

/** No token, secret or verifier of the callback in a message. */
function expectNoSecretIn(message: string, params: Record<string, string>): void {
  for (const value of Object.values(params)) expect(message).not.toContain(value);
  expect(message).not.toContain(consumerSecret);
}
