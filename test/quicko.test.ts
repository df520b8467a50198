import { nextDueAt } from '../shared/refresh.ts';
import { randomBytes } from 'node:crypto';
import { GetItemCommand } from '@aws-sdk/client-dynamodb';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../shared/config.ts';
import {
  AccessDeniedError,
  InvalidRequestError,
  ProviderRejectedError,
  ProviderUnavailableError,
} from '../shared/errors.ts';
import { logger } from '../shared/logger.ts';
import type { QuickoConfig } from '../shared/providers/config/quicko.ts';
import type { ResolvedProvider } from '../shared/providers/resolve.ts';
import type { ProviderContext, TokenSet } from '../shared/providers/types.ts';
import { renewTokens } from '../shared/refresh.ts';
import { captureOutput, startTestBroker, type TestBroker } from './helpers/local.ts';

// The Quicko kind against the sandbox Quicko over real HTTP: the consent app (OTP, consent
// screen), /authenticate, /oauth/authorize and an Open API stand-in (/me).
let local: TestBroker;
let quicko: ResolvedProvider;
let ctx: ProviderContext<QuickoConfig>;
let callbackUrl: string;
const HOUR = 3600;
const DAY_MS = 24 * HOUR * 1000;

beforeAll(async () => {
  local = await startTestBroker({
    config: parseConfig({
      allowedReturnTo: ['http://localhost/'],
      providers: { quicko: { catalog: 'quicko', environment: 'sandbox' } },
    }),
  });
  quicko = local.broker.providers.get('quicko')!;
  ctx = quicko.context as unknown as ProviderContext<QuickoConfig>;
  callbackUrl = `${local.url}/callback/quicko`;
});
afterAll(() => local.close());
afterEach(() => {
  const sandbox = local.sandboxes.quicko;
  sandbox.fault = undefined;
  sandbox.tokensAt = 'data';
  sandbox.apiUserTokenSeconds = 86_400;
});

const sandbox = () => local.sandboxes.quicko;
const newState = () => randomBytes(16).toString('base64url');
const withConfig = (config: Partial<QuickoConfig>): ProviderContext<QuickoConfig> => ({
  ...ctx,
  config: { ...ctx.config, ...config },
});

/** Reads a hidden or named form field and the form's action out of a sandbox page. */
function formOf(html: string): { action: string; login: string } {
  const action = /<form method="post" action="([^"]+)"/.exec(html)?.[1];
  const login = /name="login" value="([^"]+)"/.exec(html)?.[1];
  if (!action || !login) throw new Error(`no form in page: ${html}`);
  return { action: action.replaceAll('&amp;', '&'), login };
}

const postForm = (url: string, fields: Record<string, string>) =>
  fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams(fields).toString(),
    redirect: 'manual',
  });

/**
 * A person at the sandbox consent app: opens the consent URL, types the OTP the page shows,
 * then presses Allow or Cancel. Returns the query parameters of the redirect back to us.
 */
async function consentAt(
  authorizationUrl: string,
  decision: 'allow' | 'cancel' = 'allow',
): Promise<{ location: URL; params: Record<string, string> }> {
  const login = await fetch(authorizationUrl);
  expect(login.status).toBe(200);
  const loginPage = await login.text();
  const otp = /sandbox OTP: <span id="otp">(\d{6})<\/span>/.exec(loginPage)?.[1];
  expect(otp).toBeDefined();
  const otpForm = formOf(loginPage);
  const consent = await postForm(otpForm.action, { login: otpForm.login, otp: otp! });
  expect(consent.status).toBe(200);
  const consentPage = await consent.text();
  expect(consentPage).toContain('value="allow"');
  expect(consentPage).toContain('value="cancel"');
  const consentForm = formOf(consentPage);
  const back = await postForm(consentForm.action, { login: consentForm.login, decision });
  expect(back.status).toBe(302);
  const location = new URL(back.headers.get('location')!);
  return { location, params: Object.fromEntries(location.searchParams) };
}

/** The whole consent, start to tokens, as the connect routes will drive it. */
async function connect(context = ctx): Promise<TokenSet> {
  const state = newState();
  const start = await quicko.kind.startConsent!(context as never, { callbackUrl, state });
  const { params } = await consentAt(start.authorizationUrl);
  return quicko.kind.completeConsent!(context as never, {
    params,
    callbackUrl: start.callbackUrl ?? callbackUrl,
    state,
    flowSecrets: start.flowSecrets ?? {},
  });
}

/** Calls the sandbox's Open API stand-in with this Authorization header and the API key. */
async function openApi(authorization: string, key?: string): Promise<number> {
  const response = await fetch(`${local.url}/sandbox/quicko/me`, {
    headers: { authorization, 'x-api-key': key ?? (await apiKey()) },
  });
  return response.status;
}

/** The same token with a signature the sandbox did not make. */
const forge = (token: string) => `${token.split('.').slice(0, 2).join('.')}.forged`;

async function apiKey(): Promise<string> {
  return (await ctx.secret()).api_key!;
}

describe('Quicko consent', () => {
  it('start → OTP → Allow → callback with our state and a request token → tokens that work', async () => {
    const state = newState();
    const start = await quicko.kind.startConsent!(quicko.context, { callbackUrl, state });

    // Quicko returns no state: it rides in the callback URL we hand over, base64 by default.
    expect(start.callbackUrl).toBe(`${callbackUrl}?state=${state}`);
    const consentUrl = new URL(start.authorizationUrl);
    expect(`${consentUrl.origin}${consentUrl.pathname}`).toBe(`${local.url}/sandbox/quicko/login`);
    expect(consentUrl.searchParams.get('api_key')).toBe(await apiKey());
    const redirect = consentUrl.searchParams.get('redirect')!;
    expect(Buffer.from(redirect, 'base64').toString('utf8')).toBe(start.callbackUrl);
    expect(start.flowSecrets).toBeUndefined();

    const { location, params } = await consentAt(start.authorizationUrl);
    expect(`${location.origin}${location.pathname}`).toBe(callbackUrl);
    expect(params.state).toBe(state);
    expect(params.request_token).toMatch(/^sbx_quicko\./);
    // The core finds the flow by params.state, which rides inside the callback URL.
    expect(quicko.kind.variant).toBe('user-consent');

    const now = local.clock.t;
    const tokens = await quicko.kind.completeConsent!(quicko.context, {
      params,
      callbackUrl: start.callbackUrl!,
      state,
      flowSecrets: {},
    });
    expect(tokens.expiresAt).toBe(now + DAY_MS);
    expect(tokens.refreshToken).toMatch(/^sbx_quicko\./);
    expect(tokens.refreshTokenExpiresAt).toBe(now + 365 * DAY_MS);

    // Quicko's APIs take the token bare in Authorization; "Bearer …" is refused.
    const authorization = quicko.kind.authorization!(tokens);
    expect(authorization).toBe(tokens.accessToken);
    expect(await openApi(authorization)).toBe(200);
    expect(await openApi(`Bearer ${tokens.accessToken}`)).toBe(401);
    expect(await openApi(tokens.refreshToken!)).toBe(401);
  });

  it('speaks the older doc: redirect_url, plain encoding, base64 JSON options', async () => {
    const context = withConfig({
      redirectParam: 'redirect_url',
      redirectEncoding: 'plain',
      options: { intent: 'login', theme: 'dark' },
    });
    const state = newState();
    const start = await quicko.kind.startConsent!(context, { callbackUrl, state });
    const url = new URL(start.authorizationUrl);
    expect(url.searchParams.get('redirect')).toBeNull();
    expect(url.searchParams.get('redirect_url')).toBe(start.callbackUrl);
    expect(JSON.parse(Buffer.from(url.searchParams.get('options')!, 'base64').toString())).toEqual({
      intent: 'login',
      theme: 'dark',
    });
    const { params } = await consentAt(start.authorizationUrl);
    expect(params.state).toBe(state);
    const tokens = await quicko.kind.completeConsent!(context, {
      params,
      callbackUrl: start.callbackUrl!,
      state,
      flowSecrets: {},
    });
    expect(await openApi(tokens.accessToken)).toBe(200);
  });

  it('consent page: the sandbox one for environment sandbox, the documented host otherwise, or as configured', async () => {
    const input = { callbackUrl: 'https://broker.example/callback/quicko', state: 'abc' };
    // The catalog entry as configured for production: its documented consent page.
    const productionEntry = parseConfig({
      providers: { quicko: { catalog: 'quicko', environment: 'production' } },
    }).providers.quicko as QuickoConfig;
    const production = await quicko.kind.startConsent!(withConfig(productionEntry), input);
    expect(production.authorizationUrl).toMatch(/^https:\/\/oauth\.quicko\.com\/login\?api_key=/);
    const configured = await quicko.kind.startConsent!(
      withConfig({ consentUrl: 'https://consent.example/oauth/login?lang=en' }),
      input,
    );
    const url = new URL(configured.authorizationUrl);
    expect(`${url.origin}${url.pathname}`).toBe('https://consent.example/oauth/login');
    expect(url.searchParams.get('lang')).toBe('en');
    expect(configured.callbackUrl).toBe('https://broker.example/callback/quicko?state=abc');
  });

  it('Cancel → access_denied; a callback without request_token → invalid_request', async () => {
    const state = newState();
    const start = await quicko.kind.startConsent!(quicko.context, { callbackUrl, state });
    const { params } = await consentAt(start.authorizationUrl, 'cancel');
    expect(params).toEqual({ state, status: 'cancelled' });
    const before = sandbox().callCount('authorize');
    const input = { params, callbackUrl: start.callbackUrl!, state, flowSecrets: {} };
    await expect(quicko.kind.completeConsent!(quicko.context, input)).rejects.toBeInstanceOf(
      AccessDeniedError,
    );
    const missing = { ...input, params: { state } };
    const error = await quicko.kind.completeConsent!(quicko.context, missing).catch((e) => e);
    expect(error).toBeInstanceOf(InvalidRequestError);
    expect((error as InvalidRequestError).code).toBe('invalid_request');
    expect(sandbox().callCount('authorize')).toBe(before); // nothing sent to Quicko
  });

  it('a wrong OTP is refused and the page asks again', async () => {
    const start = await quicko.kind.startConsent!(quicko.context, {
      callbackUrl,
      state: newState(),
    });
    const page = await (await fetch(start.authorizationUrl)).text();
    const form = formOf(page);
    const otp = /sandbox OTP: <span id="otp">(\d{6})/.exec(page)![1]!;
    const wrong = await postForm(form.action, {
      login: form.login,
      otp: otp === '000000' ? '111111' : '000000',
    });
    expect(wrong.status).toBe(401);
    expect(await wrong.text()).toContain('name="otp"');
    const right = await postForm(form.action, { login: form.login, otp });
    expect(right.status).toBe(200);
    // Straight to the consent step without an OTP: refused.
    const skipped = await postForm(`${local.url}/sandbox/quicko/login/consent`, {
      login: 'made-up',
      decision: 'allow',
    });
    expect(skipped.status).toBe(400);
  });

  it('the sandbox consent app refuses an unknown api_key and a redirect that is not a URL', async () => {
    const bad = new URL(`${local.url}/sandbox/quicko/login`);
    bad.searchParams.set('api_key', 'nobody');
    bad.searchParams.set('redirect', Buffer.from(callbackUrl).toString('base64'));
    expect((await fetch(bad)).status).toBe(400);
    bad.searchParams.set('api_key', await apiKey());
    bad.searchParams.set('redirect', Buffer.from('javascript:alert(1)').toString('base64'));
    expect((await fetch(bad)).status).toBe(400);
  });

  it('a request token is single use: the second exchange → provider_rejected, token not in the message', async () => {
    const state = newState();
    const start = await quicko.kind.startConsent!(quicko.context, { callbackUrl, state });
    const { params } = await consentAt(start.authorizationUrl);
    const input = { params, callbackUrl: start.callbackUrl!, state, flowSecrets: {} };
    await quicko.kind.completeConsent!(quicko.context, input);
    const error = await quicko.kind.completeConsent!(quicko.context, input).catch((e) => e);
    expect(error).toBeInstanceOf(ProviderRejectedError);
    expect((error as ProviderRejectedError).status).toBe(403);
    expect((error as Error).message).not.toContain(params.request_token);
  });

  it('an expired request token (10 minutes) → provider_rejected', async () => {
    const state = newState();
    const start = await quicko.kind.startConsent!(quicko.context, { callbackUrl, state });
    const { params } = await consentAt(start.authorizationUrl);
    local.clock.advance(601);
    const error = await quicko.kind.completeConsent!(quicko.context, {
      params,
      callbackUrl: start.callbackUrl!,
      state,
      flowSecrets: {},
    }).catch((e) => e);
    expect(error).toBeInstanceOf(ProviderRejectedError);
  });

  it('reads tokens at the root of the answer as well as under data', async () => {
    sandbox().tokensAt = 'root';
    const tokens = await connect();
    expect(tokens.refreshToken).toBeDefined();
    expect(await openApi(tokens.accessToken)).toBe(200);
  });
});

describe('Quicko API-user token', () => {
  it('is cached: a second exchange makes no /authenticate call', async () => {
    await ctx.sealedCache.put('api-user-token', 'expired', 0); // reads as absent
    const before = sandbox().callCount('authenticate');
    await connect();
    expect(sandbox().callCount('authenticate')).toBe(before + 1);
    await connect();
    expect(sandbox().callCount('authenticate')).toBe(before + 1);
  });

  it('is stored encrypted: the cache item holds no plaintext token', async () => {
    await connect();
    const apiUserToken = await ctx.sealedCache.get('api-user-token');
    expect(apiUserToken).toMatch(/^sbx_quicko\./);
    const out = await local.dynamo.send(
      new GetItemCommand({
        TableName: local.tableName,
        Key: { pk: { S: 'cache#quicko#api-user-token' } },
      }),
    );
    const raw = JSON.stringify(out.Item);
    expect(out.Item?.value?.S).toMatch(/^v2\./);
    expect(raw).not.toContain(apiUserToken);
    expect(raw).not.toContain(apiUserToken!.split('.')[1]); // not even its payload part
    // And it is the token the sandbox issued: /oauth/authorize accepts it.
    const response = await fetch(`${local.url}/sandbox/quicko/oauth/authorize?request_token=x`, {
      method: 'POST',
      headers: { 'x-api-key': await apiKey(), authorization: apiUserToken! },
    });
    expect(response.status).toBe(403);
    expect(((await response.json()) as { message: string }).message).toBe(
      'Invalid or expired request token',
    );
  });

  it('expired at Quicko while still cached → 403, re-authenticate once, and succeed', async () => {
    sandbox().apiUserTokenSeconds = 60;
    await ctx.sealedCache.put('api-user-token', 'expired', 0); // reads as absent
    await connect(); // caches a token the sandbox will consider lapsed in 60 s
    local.clock.advance(120);
    const authenticate = sandbox().callCount('authenticate');
    const authorize = sandbox().callCount('authorize');
    const tokens = await connect();
    expect(await openApi(tokens.accessToken)).toBe(200);
    expect(sandbox().callCount('authenticate')).toBe(authenticate + 1);
    expect(sandbox().callCount('authorize')).toBe(authorize + 2);
    // The new token replaced the old one in the cache.
    sandbox().apiUserTokenSeconds = 86_400;
    const again = sandbox().callCount('authenticate');
    await connect();
    expect(sandbox().callCount('authenticate')).toBe(again);
  });

  it('the API sends 403 "Access token has expired" for a lapsed API-user token', async () => {
    sandbox().apiUserTokenSeconds = 60;
    const key = await apiKey();
    const auth = await fetch(`${local.url}/sandbox/quicko/authenticate`, {
      method: 'POST',
      headers: { 'x-api-key': key, 'x-api-secret': (await ctx.secret()).api_secret! },
    });
    const body = (await auth.json()) as { code: number; data: { access_token: string } };
    expect(body.code).toBe(200);
    local.clock.advance(61);
    const response = await fetch(`${local.url}/sandbox/quicko/oauth/authorize?request_token=x`, {
      method: 'POST',
      headers: { 'x-api-key': key, authorization: body.data.access_token },
    });
    expect(response.status).toBe(403);
    expect(await response.json()).toMatchObject({ code: 403, message: 'Access token has expired' });
  });

  it('bad API credentials → provider_rejected, secret not in the message', async () => {
    await ctx.sealedCache.put('api-user-token', 'expired', 0); // reads as absent
    const wrong = {
      ...ctx,
      secret: async () => ({ api_key: await apiKey(), api_secret: 'wrong-secret' }),
    };
    const error = await quicko.kind.refresh!(wrong, {
      accessToken: 'a',
      tokenType: 'Bearer',
      refreshToken: 'r',
    }).catch((e) => e);
    expect(error).toBeInstanceOf(ProviderRejectedError);
    expect((error as ProviderRejectedError).status).toBe(401);
    // Our api_secret, not the person's grant: reconnecting would not fix it.
    expect((error as ProviderRejectedError).grantRefused).toBeUndefined();
    expect((error as Error).message).toContain('quicko authenticate');
    expect((error as Error).message).not.toContain('wrong-secret');
  });
});

describe('Quicko refresh', () => {
  it('gives a new access token; the core keeps the refresh token', async () => {
    const tokens = await connect();
    local.clock.advance(HOUR);
    const renewed = await quicko.kind.refresh!(quicko.context, tokens);
    expect(renewed.accessToken).not.toBe(tokens.accessToken);
    expect(renewed.refreshToken).toBeUndefined(); // Quicko sends none back
    expect(renewed.expiresAt).toBe(local.clock.t + DAY_MS);
    expect(await openApi(renewed.accessToken)).toBe(200);

    const kept = await renewTokens({ now: local.clock.now, logger }, quicko, tokens);
    expect(kept.accessToken).not.toBe(tokens.accessToken);
    expect(kept.refreshToken).toBe(tokens.refreshToken);
    expect(kept.refreshTokenExpiresAt).toBe(tokens.refreshTokenExpiresAt);
  });

  it('a refused refresh token → provider_rejected, after one re-authentication to rule out the API-user token', async () => {
    const tokens = await connect();
    const forged = { ...tokens, refreshToken: forge(tokens.refreshToken!) };
    const authenticate = sandbox().callCount('authenticate');
    const error = await quicko.kind.refresh!(quicko.context, forged).catch((e) => e);
    expect(error).toBeInstanceOf(ProviderRejectedError);
    expect((error as ProviderRejectedError).code).toBe('provider_rejected');
    expect((error as ProviderRejectedError).grantRefused).toBe(true);
    expect((error as Error).message).not.toContain(forged.refreshToken);
    expect(sandbox().callCount('authenticate')).toBe(authenticate + 1);
  });

  it('with a fresh API-user token, a 403 refuses the refresh token at once: grantRefused', async () => {
    const tokens = await connect();
    const forged = { ...tokens, refreshToken: forge(tokens.refreshToken!) };
    await ctx.sealedCache.put('api-user-token', 'expired', 0); // reads as absent
    const authenticate = sandbox().callCount('authenticate');
    const authorize = sandbox().callCount('authorize');
    const error = await quicko.kind.refresh!(quicko.context, forged).catch((e) => e);
    expect(error).toBeInstanceOf(ProviderRejectedError);
    expect(error).toMatchObject({ status: 403, grantRefused: true });
    expect(sandbox().callCount('authenticate')).toBe(authenticate + 1);
    expect(sandbox().callCount('authorize')).toBe(authorize + 1);
  });

  it('an error body in a 200 answer is a refusal too', async () => {
    const tokens = await connect();
    sandbox().fault = {
      type: 'status',
      status: 200,
      body: '{"code":400,"message":"Bad request","timestamp":1,"transaction_id":"t"}',
    };
    const error = await quicko.kind.refresh!(quicko.context, tokens).catch((e) => e);
    expect(error).toBeInstanceOf(ProviderRejectedError);
    expect((error as ProviderRejectedError).status).toBe(400);
    expect((error as ProviderRejectedError).grantRefused).toBeUndefined(); // not about the token
  });

  it.each([
    ['HTTP 500', { type: 'status', status: 500 } as const],
    ['HTTP 429', { type: 'status', status: 429 } as const],
    ['a body that is not JSON', { type: 'garbage' } as const],
    ['a timeout', { type: 'delay', ms: 1_000 } as const],
    [
      'a JSON answer with no access token',
      { type: 'status', status: 200, body: '{"code":200}' } as const,
    ],
  ])('%s → provider_unavailable; refresh is retried (no rotation)', async (_name, fault) => {
    const tokens = await connect(); // leaves a cached API-user token
    sandbox().fault = fault;
    const before = sandbox().callCount('authorize');
    const error = await quicko.kind.refresh!(quicko.context, tokens).catch((e) => e);
    expect(error).toBeInstanceOf(ProviderUnavailableError);
    expect((error as ProviderUnavailableError).code).toBe('provider_unavailable');
    expect(sandbox().callCount('authorize')).toBe(before + 3);
  });

  it('HTTP 500 on the request-token exchange → provider_unavailable, not retried (single use)', async () => {
    await connect();
    const state = newState();
    const start = await quicko.kind.startConsent!(quicko.context, { callbackUrl, state });
    const { params } = await consentAt(start.authorizationUrl);
    sandbox().fault = { type: 'status', status: 500 };
    const before = sandbox().callCount('authorize');
    const error = await quicko.kind.completeConsent!(quicko.context, {
      params,
      callbackUrl: start.callbackUrl!,
      state,
      flowSecrets: {},
    }).catch((e) => e);
    expect(error).toBeInstanceOf(ProviderUnavailableError);
    expect(sandbox().callCount('authorize')).toBe(before + 1);
  });
});

describe('Quicko through the token function', () => {
  it('renews an expired access token by refresh; the answer authorizes against the sandbox API', async () => {
    const { result: tokens, output } = await captureOutput(async () => {
      const tokens = await connect();
      const now = local.clock.t;
      await local.broker.store.create(
        'quicko',
        'person-1',
        tokens,
        now,
        tokens.expiresAt! - 300_000,
      );

      const fresh = await local.invoke({ provider: 'quicko', connectionId: 'person-1' });
      expect(fresh).toMatchObject({ ok: true, accessToken: tokens.accessToken });
      expect(fresh.authorization).toBe(tokens.accessToken);

      local.clock.advance(25 * HOUR);
      const before = sandbox().callCount('authorize');
      const renewed = await local.invoke({ provider: 'quicko', connectionId: 'person-1' });
      expect(renewed.ok).toBe(true);
      expect(renewed.accessToken).not.toBe(tokens.accessToken);
      expect(renewed.expiresAt).toBe(new Date(local.clock.t + DAY_MS).toISOString());
      expect(renewed.authorization).toBe(renewed.accessToken); // bare, as Quicko wants it
      expect(sandbox().callCount('authorize')).toBeGreaterThan(before);
      expect(await openApi(renewed.authorization as string)).toBe(200);

      // The stored refresh token was kept (Quicko sends none back): renew once more.
      local.clock.advance(25 * HOUR);
      const again = await local.invoke({ provider: 'quicko', connectionId: 'person-1' });
      expect(again.ok).toBe(true);
      expect(await openApi(again.authorization as string)).toBe(200);
      // The answer's headers are all a service needs: the bare token and Quicko's API key.
      expect(again.headers).toEqual({
        Authorization: again.authorization,
        'x-api-key': await apiKey(),
        'x-api-version': '1.0',
      });
      const api = await fetch(`${local.url}/sandbox/quicko/me`, {
        headers: again.headers as Record<string, string>,
      });
      expect(api.status).toBe(200);
      expect(await openApi(again.authorization as string, 'another-key')).toBe(401);
      const stored = await local.broker.store.get('quicko', 'person-1');
      expect(stored?.tokens.refreshToken).toBe(tokens.refreshToken);
      return tokens;
    });
    for (const secret of [tokens.accessToken, tokens.refreshToken!]) {
      expect(output).not.toContain(secret);
    }
  });

  it('a refused refresh token ends in needs_reauth', async () => {
    const tokens = await connect();
    const forged = { ...tokens, refreshToken: forge(tokens.refreshToken!) };
    await local.broker.store.create('quicko', 'person-2', forged, local.clock.t);
    local.clock.advance(25 * HOUR);
    const first = await local.invoke({ provider: 'quicko', connectionId: 'person-2' });
    expect(first.ok).toBe(false);
    expect((first.error as { code: string }).code).toMatch(/^(provider_rejected|needs_reauth)$/);
    expect(JSON.stringify(first)).not.toContain(forged.refreshToken);
    const stored = await local.broker.store.get('quicko', 'person-2');
    expect(stored?.status).toBe('needs_reauth');
    const second = await local.invoke({ provider: 'quicko', connectionId: 'person-2' });
    expect((second.error as { code: string }).code).toBe('needs_reauth');
  });

  it('two weeks before the one-year refresh token ends, the refresher asks for consent again', async () => {
    const tokens = await connect();
    const provider = local.broker.providers.get('quicko')!;
    expect(provider.reauthLeadMs).toBe(14 * DAY_MS); // the kind's default
    // Fresh consent: due ahead of the access token's expiry, long before the consent's end.
    expect(nextDueAt(provider, tokens)).toBe(tokens.expiresAt! - provider.leadMs);
    const ending = {
      ...tokens,
      refreshTokenExpiresAt: local.clock.t + 14 * DAY_MS + 3 * 60_000, // inside the next run
    };
    await local.broker.store.create(
      'quicko',
      'person-3',
      ending,
      local.clock.t,
      nextDueAt(provider, ending),
    );
    // (Other tests' connections may fall due in the same run; only this one ends its consent.)
    const summary = await local.broker.refresher.run({ remainingMs: () => 300_000 });
    expect(summary.needsReauth).toBe(1);
    const stored = await local.broker.store.get('quicko', 'person-3');
    expect(stored).toMatchObject({ status: 'needs_reauth', lastError: { code: 'needs_reauth' } });
    expect(stored?.tokens.accessToken).toBe(tokens.accessToken); // untouched: no provider call
  });
});
