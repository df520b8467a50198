import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../shared/config.ts';
import {
  AccessDeniedError,
  ConfigError,
  InvalidRequestError,
  ProviderRejectedError,
  ProviderUnavailableError,
} from '../shared/errors.ts';
import { logger } from '../shared/logger.ts';
import type { ResolvedProvider } from '../shared/providers/resolve.ts';
import type { CallbackParams, TokenSet } from '../shared/providers/types.ts';
import { renewTokens } from '../shared/refresh.ts';
import { captureOutput, startTestBroker, type TestBroker } from './helpers/local.ts';
import { startOidcProvider, type TestOidcProvider } from './helpers/oidc.ts';

// The oauth2 kind against oidc-provider (panva), a real authorization server nobody here wrote,
// on loopback: PKCE required, refresh tokens rotated, RFC 9207 `iss` in its redirects. The
// broker is the real offline runtime, so the kind runs with the real secrets file and provider
// HTTP (timeouts, error classification).

let oidc: TestOidcProvider;
let local: TestBroker;
let dataDir: string;
/**
 * A token endpoint that misbehaves on demand: slow, 503, garbage, no refresh token, or a rotated
 * refresh token without the required token_type.
 */
let faulty: Server;
let faultyMode: 'slow' | 'unavailable' | 'garbage' | 'no-refresh-token' | 'no-token-type' =
  'unavailable';
let lastTokenRequest: { authorization?: string; body: Record<string, string> } | undefined;

const HOUR_MS = 3600 * 1000;

beforeAll(async () => {
  oidc = await startOidcProvider({ scopes: ['api:read'] });
  faulty = createServer(async (req, res) => {
    let body = '';
    for await (const chunk of req) body += String(chunk);
    lastTokenRequest = {
      ...(req.headers.authorization ? { authorization: req.headers.authorization } : {}),
      body: Object.fromEntries(new URLSearchParams(body)),
    };
    if (faultyMode === 'slow') return void setTimeout(() => res.end('{}'), 2000);
    if (faultyMode === 'unavailable') {
      res.statusCode = 503;
      return void res.end('down');
    }
    res.setHeader('content-type', 'application/json');
    if (faultyMode === 'garbage') return void res.end('{"token_type":"bearer"}');
    if (faultyMode === 'no-token-type') {
      return void res.end(
        JSON.stringify({ access_token: 'fresh-access', refresh_token: 'rotated', expires_in: 60 }),
      );
    }
    res.end(JSON.stringify({ access_token: 'fresh-access', token_type: 'bearer', expires_in: 60 }));
  });
  await new Promise<void>((resolve) => faulty.listen(0, '127.0.0.1', resolve));
  const faultyUrl = `http://127.0.0.1:${(faulty.address() as AddressInfo).port}`;

  const server = {
    kind: 'oauth2',
    authorizationUrl: oidc.authorizationUrl,
    tokenUrl: oidc.tokenUrl,
    issuer: oidc.issuer,
    scopes: ['api:read', 'offline_access'],
    // oidc-provider grants offline_access (a refresh token) only with prompt=consent.
    authorizationParams: { prompt: 'consent' },
  };
  const { basic, post } = oidc.clients;
  const providers = {
    acme: { entry: server, secret: basic },
    'acme-post': {
      entry: { ...server, clientAuthentication: 'client_secret_post' },
      secret: post,
    },
    'acme-openid': {
      entry: { ...server, scopes: ['openid', 'offline_access'] },
      secret: basic,
    },
    'acme-no-issuer': { entry: { ...server, issuer: undefined }, secret: basic },
    'acme-wrong-secret': {
      entry: server,
      secret: { ...basic, client_secret: randomBytes(24).toString('base64url') },
    },
    'acme-openid-no-issuer': {
      entry: { ...server, issuer: undefined, scopes: ['openid'] },
      secret: basic,
    },
    faulty: {
      entry: { kind: 'oauth2', authorizationUrl: `${faultyUrl}/auth`, tokenUrl: `${faultyUrl}/t` },
      secret: { client_id: 'id:with space', client_secret: 's3cret/+=' },
    },
    'faulty-post': {
      entry: {
        kind: 'oauth2',
        authorizationUrl: `${faultyUrl}/auth`,
        tokenUrl: `${faultyUrl}/t`,
        clientAuthentication: 'client_secret_post',
        tokenParams: { resource: 'https://api.example.com/' },
      },
      secret: { client_id: 'id:with space', client_secret: 's3cret/+=' },
    },
  };
  dataDir = mkdtempSync(join(tmpdir(), 'broker-oauth2-'));
  writeFileSync(
    join(dataDir, 'secrets.json'),
    JSON.stringify(
      Object.fromEntries(
        Object.entries(providers).map(([id, { secret }]) => [
          id,
          { client_id: secret.client_id, client_secret: secret.client_secret },
        ]),
      ),
    ),
  );
  local = await startTestBroker({
    dataDir,
    config: parseConfig({
      providers: Object.fromEntries(
        Object.entries(providers).map(([id, { entry }]) => [id, JSON.parse(JSON.stringify(entry))]),
      ),
    }),
  });
  for (const id of Object.keys(providers)) oidc.allowRedirectUri(callbackUrl(id));
});

afterAll(async () => {
  await local?.close();
  await oidc?.close();
  faulty?.closeAllConnections();
  await new Promise((resolve) => faulty?.close(resolve));
  rmSync(dataDir, { recursive: true, force: true });
});
afterEach(() => {
  faultyMode = 'unavailable';
});

const callbackUrl = (id: string) => `${local.url}/callback/${id}`;
const provider = (id: string): ResolvedProvider => local.broker.providers.get(id)!;

/**
 * One consent as the broker's routes would run it: startConsent, the person's browser at the
 * authorization server, then the callback's parameters (not yet exchanged).
 */
async function consent(id: string, decision: 'approve' | 'deny' = 'approve') {
  const { kind, context } = provider(id);
  const state = randomBytes(32).toString('base64url');
  const started = await kind.startConsent!(context, { callbackUrl: callbackUrl(id), state });
  const back = new URL(await oidc.consent(started.authorizationUrl, undefined, { decision }));
  expect(back.origin + back.pathname).toBe(callbackUrl(id));
  const params: CallbackParams = Object.fromEntries(back.searchParams);
  const complete = (overrides: { params?: CallbackParams; flowSecrets?: Record<string, string> }) =>
    kind.completeConsent!(context, {
      params: overrides.params ?? params,
      callbackUrl: callbackUrl(id),
      state,
      flowSecrets: overrides.flowSecrets ?? started.flowSecrets ?? {},
    });
  return { started, state, params, complete };
}

const refresh = (id: string, tokens: TokenSet) =>
  provider(id).kind.refresh!(provider(id).context, tokens);

describe('oauth2 configuration', () => {
  const entry = {
    kind: 'oauth2',
    authorizationUrl: 'https://as.example.com/authorize',
    tokenUrl: 'https://as.example.com/token',
  };

  it('accepts an entry with only its two endpoints, and resolves it with no base URL', () => {
    const config = parseConfig({ providers: { acme: entry } });
    expect(config.providers.acme).toEqual(entry);
    expect(local.broker.providers.get('faulty')?.context.baseUrl).toBe('');
  });

  it.each([
    [{ ...entry, tokenUrl: 'http://as.example.com/token' }, 'providers.acme.tokenUrl'],
    [{ ...entry, authorizationUrl: 'not a url' }, 'providers.acme.authorizationUrl'],
    [{ ...entry, tokenUrl: undefined }, 'providers.acme.tokenUrl'],
    [{ ...entry, clientAuthentication: 'private_key_jwt' }, 'providers.acme.clientAuthentication'],
    [{ ...entry, authorizationParams: { state: 'x' } }, 'providers.acme.authorizationParams.state'],
    [{ ...entry, tokenParams: { grant_type: 'x' } }, 'providers.acme.tokenParams.grant_type'],
    [{ ...entry, scopes: ['a b'] }, 'providers.acme.scopes.0'],
    [{ ...entry, environment: 'production' }, 'providers.acme'],
  ])('refuses a bad entry and names the key: %j', (bad, key) => {
    expect(() => parseConfig({ providers: { acme: bad } })).toThrowError(ConfigError);
    expect(() => parseConfig({ providers: { acme: bad } })).toThrowError(key);
  });

  it('allows plain http only for a loopback server', () => {
    for (const host of ['localhost:8080', '127.0.0.1:9000', '[::1]']) {
      const local = { ...entry, tokenUrl: `http://${host}/token` };
      expect(() => parseConfig({ providers: { acme: local } })).not.toThrow();
    }
    const lookalike = { ...entry, tokenUrl: 'http://localhost.example.com/token' };
    expect(() => parseConfig({ providers: { acme: lookalike } })).toThrowError('tokenUrl');
  });
});

describe('oauth2 consent against oidc-provider', () => {
  it('sends the browser to the authorization endpoint with state and a PKCE S256 challenge', async () => {
    const { kind, context } = provider('acme');
    const started = await kind.startConsent!(context, {
      callbackUrl: callbackUrl('acme'),
      state: 'the-state',
    });
    const url = new URL(started.authorizationUrl);
    const verifier = started.flowSecrets!.code_verifier!;
    expect(url.origin + url.pathname).toBe(oidc.authorizationUrl);
    expect(Object.fromEntries(url.searchParams)).toEqual({
      prompt: 'consent',
      response_type: 'code',
      client_id: oidc.clients.basic.client_id,
      redirect_uri: callbackUrl('acme'),
      state: 'the-state',
      scope: 'api:read offline_access',
      code_challenge: createHash('sha256').update(verifier).digest('base64url'),
      code_challenge_method: 'S256',
    });
    expect(verifier).toMatch(/^[A-Za-z0-9_-]{43,128}$/);
    expect(started.authorizationUrl).not.toContain(verifier);
  });

  it('exchanges the code for tokens, refreshes with rotation, and refuses the old refresh token', async () => {
    const { params, complete } = await consent('acme');
    expect(params).toMatchObject({ iss: oidc.issuer });
    expect(params.code).toBeTruthy();

    const tokens = await complete({});
    expect(tokens).toEqual({
      accessToken: expect.any(String),
      tokenType: 'Bearer',
      expiresAt: local.clock.now() + HOUR_MS,
      refreshToken: expect.any(String),
    });

    local.clock.advance(1800);
    const renewed = await refresh('acme', tokens);
    expect(renewed.accessToken).not.toBe(tokens.accessToken);
    expect(renewed.refreshToken).toBeTruthy();
    expect(renewed.refreshToken).not.toBe(tokens.refreshToken);
    expect(renewed.expiresAt).toBe(local.clock.now() + HOUR_MS);

    // Rotation: the consumed refresh token is refused on reuse (and oidc-provider revokes the
    // grant, so the newest one goes with it).
    // invalid_grant on a refresh refuses the connection's grant: reconnecting is the fix.
    const reuse = await refresh('acme', tokens).catch((error: unknown) => error);
    expect(reuse).toBeInstanceOf(ProviderRejectedError);
    expect(reuse).toMatchObject({ providerCode: 'invalid_grant', status: 400, grantRefused: true });
    await expect(refresh('acme', renewed)).rejects.toMatchObject({
      providerCode: 'invalid_grant',
      grantRefused: true,
    });
  });

  it('a refresh refused for our client secret (invalid_client) does not mark the grant refused', async () => {
    const { complete } = await consent('acme');
    const tokens = await complete({});
    // Same client id, a secret the server no longer accepts (rotated there, not here).
    const error = await refresh('acme-wrong-secret', tokens).catch((error: unknown) => error);
    expect(error).toBeInstanceOf(ProviderRejectedError);
    expect(error).toMatchObject({ providerCode: 'invalid_client', status: 401 });
    expect((error as ProviderRejectedError).grantRefused).toBeUndefined();
    // The grant itself is intact: the right secret still refreshes it.
    expect((await refresh('acme', tokens)).accessToken).toBeTruthy();
  });

  it('refuses the same code twice', async () => {
    const { complete } = await consent('acme');
    await complete({});
    await expect(complete({})).rejects.toMatchObject({
      code: 'provider_rejected',
      providerCode: 'invalid_grant',
    });
  });

  it('authenticates with client_secret_post as configured', async () => {
    const { complete } = await consent('acme-post');
    const tokens = await complete({});
    const renewed = await refresh('acme-post', tokens);
    expect(renewed.refreshToken).not.toBe(tokens.refreshToken);
  });

  it('reports a wrong client secret as invalid_client', async () => {
    const { complete } = await consent('acme-wrong-secret');
    const error = await complete({}).catch((error: unknown) => error);
    expect(error).toBeInstanceOf(ProviderRejectedError);
    expect(error).toMatchObject({ providerCode: 'invalid_client', status: 401 });
    expect((error as Error).message).toBe(
      'The acme-wrong-secret code exchange call was refused (HTTP 401, invalid_client).',
    );
  });

  it('is held to PKCE: a wrong verifier or none is refused', async () => {
    const first = await consent('acme');
    await expect(
      first.complete({ flowSecrets: { code_verifier: randomBytes(32).toString('base64url') } }),
    ).rejects.toMatchObject({ code: 'provider_rejected', providerCode: 'invalid_grant' });

    const second = await consent('acme');
    await expect(second.complete({ flowSecrets: {} })).rejects.toMatchObject({
      code: 'provider_rejected',
      providerCode: 'invalid_grant',
    });
  });

  it('turns a person declining at the server into access_denied', async () => {
    const { params, complete } = await consent('acme', 'deny');
    expect(params).toMatchObject({ error: 'access_denied', iss: oidc.issuer });
    await expect(complete({})).rejects.toBeInstanceOf(AccessDeniedError);
  });

  it('maps the other error redirects: refusals, and the two the RFC calls transient', async () => {
    const { params, complete } = await consent('acme');
    const base = { state: params.state!, iss: oidc.issuer };
    await expect(complete({ params: { ...base, error: 'invalid_scope' } })).rejects.toMatchObject({
      code: 'provider_rejected',
      providerCode: 'invalid_scope',
    });
    for (const error of ['temporarily_unavailable', 'server_error']) {
      await expect(complete({ params: { ...base, error } })).rejects.toBeInstanceOf(
        ProviderUnavailableError,
      );
    }
    // A description (free text from the query string) never reaches the message.
    const odd = await complete({
      params: { ...base, error: 'weird error <script>', error_description: 'secret-ish' },
    }).catch((error: unknown) => error as ProviderRejectedError);
    expect(odd).toBeInstanceOf(ProviderRejectedError);
    expect(odd).toMatchObject({ providerCode: undefined });
    expect((odd as Error).message).not.toMatch(/script|secret-ish/);
  });

  it('refuses a malformed callback: no code, another state', async () => {
    const { params, complete } = await consent('acme');
    await expect(
      complete({ params: { state: params.state!, iss: params.iss! } }),
    ).rejects.toBeInstanceOf(InvalidRequestError);
    await expect(complete({ params: { ...params, state: 'another' } })).rejects.toBeInstanceOf(
      InvalidRequestError,
    );
    // The real code is still good: nothing was sent to the server.
    await expect(complete({})).resolves.toMatchObject({ tokenType: 'Bearer' });
  });

  it('checks iss against the configured issuer (RFC 9207): a foreign or missing one is refused', async () => {
    const { params, complete } = await consent('acme');
    await expect(
      complete({ params: { ...params, iss: 'https://evil.example.com' } }),
    ).rejects.toThrowError(/not a valid authorization response: unexpected "iss"/);
    const { iss: _iss, ...withoutIss } = params;
    await expect(complete({ params: withoutIss })).rejects.toBeInstanceOf(InvalidRequestError);
    await expect(complete({})).resolves.toMatchObject({ tokenType: 'Bearer' });
  });

  it('without a configured issuer, ignores iss (nothing to compare it with)', async () => {
    const { params, complete } = await consent('acme-no-issuer');
    const tokens = await complete({ params: { ...params, iss: 'https://elsewhere.example' } });
    expect(tokens.refreshToken).toBeTruthy();
  });

  it('checkCallback: decides before anything is consumed, on the real redirects', async () => {
    const check = (id: string, params: CallbackParams) =>
      provider(id).kind.checkCallback!(provider(id).context, params);
    const { params } = await consent('acme');
    expect(check('acme', params)).toEqual({ ok: true });
    expect(check('acme', { ...params, iss: 'https://evil.example.com' })).toMatchObject({
      ok: false,
      message: expect.stringMatching(/another issuer/),
    });
    const { iss: _iss, ...withoutIss } = params;
    expect(check('acme', withoutIss)).toMatchObject({
      ok: false,
      message: expect.stringMatching(/no iss/),
    });
    const { code: _code, ...withoutCode } = params;
    expect(check('acme', withoutCode)).toMatchObject({
      ok: false,
      message: expect.stringMatching(/no code/),
    });
    // A refusal the server reports is well-formed: it passes, and completeConsent reports it.
    const declined = await consent('acme', 'deny');
    expect(check('acme', declined.params)).toEqual({ ok: true });
    // Without a configured issuer there is nothing to compare iss with.
    const noIssuer = await consent('acme-no-issuer');
    expect(
      check('acme-no-issuer', { ...noIssuer.params, iss: 'https://elsewhere.example' }),
    ).toEqual({ ok: true });
  });

  it('with scope openid, validates the ID token against the issuer and keeps only the OAuth tokens', async () => {
    const { complete } = await consent('acme-openid');
    const tokens = await complete({});
    expect(Object.keys(tokens).sort()).toEqual([
      'accessToken',
      'expiresAt',
      'refreshToken',
      'tokenType',
    ]);
    // The access token is real: the server's userinfo endpoint takes it.
    const me = await fetch(`${oidc.issuer}/me`, {
      headers: { authorization: `Bearer ${tokens.accessToken}` },
    });
    expect(me.status).toBe(200);
    expect(await me.json()).toEqual({ sub: 'alice' });
    // The refresh answer carries a new ID token too, checked the same way.
    await expect(refresh('acme-openid', tokens)).resolves.toMatchObject({ tokenType: 'Bearer' });
    // An ID token cannot be checked without an issuer: such an entry fails before the browser goes.
    const { kind, context } = provider('acme-openid-no-issuer');
    await expect(
      kind.startConsent!(context, { callbackUrl: callbackUrl('x'), state: 's' }),
    ).rejects.toThrowError(/acme-openid-no-issuer\.issuer: required with scope openid/);
  });

  it('prints nothing — no oidc-provider notice, no token, code, verifier or secret', async () => {
    const { output, result } = await captureOutput(async () => {
      const flow = await consent('acme');
      const tokens = await flow.complete({});
      return { flow, tokens, renewed: await refresh('acme', tokens) };
    });
    const { flow, tokens, renewed } = result;
    for (const secret of [
      tokens.accessToken,
      tokens.refreshToken!,
      renewed.refreshToken!,
      flow.params.code!,
      flow.started.flowSecrets!.code_verifier!,
      oidc.clients.basic.client_secret,
    ]) {
      expect(output).not.toContain(secret);
    }
    expect(output).not.toContain('oidc-provider');
  });
});

describe('oauth2 failures of the token endpoint', () => {
  const exchange = () =>
    provider('faulty').kind.completeConsent!(provider('faulty').context, {
      params: { code: 'a-code', state: 's' },
      callbackUrl: callbackUrl('faulty'),
      state: 's',
      flowSecrets: { code_verifier: 'v'.repeat(43) },
    });

  it('a 503 is provider_unavailable', async () => {
    faultyMode = 'unavailable';
    await expect(exchange()).rejects.toMatchObject({
      code: 'provider_unavailable',
      status: 503,
    });
  });

  it('a timeout (the broker’s provider timeout) is provider_unavailable', async () => {
    faultyMode = 'slow';
    await expect(exchange()).rejects.toThrowError(/timed out after 400 ms/);
  });

  it('a 200 that is not a token response is provider_unavailable', async () => {
    faultyMode = 'garbage';
    const error = await exchange().catch((error: unknown) => error);
    expect(error).toBeInstanceOf(ProviderUnavailableError);
    expect((error as Error).message).toMatch(/carried no access token/);
  });

  it('sends the client credentials as configured: HTTP Basic (form-encoded first) or in the body', async () => {
    faultyMode = 'no-refresh-token';
    const current: TokenSet = { accessToken: 'a', tokenType: 'Bearer', refreshToken: 'r' };
    await refresh('faulty', current);
    // RFC 6749 §2.3.1: id and secret are form-encoded before they are joined and base64-encoded.
    expect(lastTokenRequest).toEqual({
      authorization: `Basic ${Buffer.from('id%3Awith+space:s3cret%2F%2B%3D').toString('base64')}`,
      body: { grant_type: 'refresh_token', refresh_token: 'r' },
    });
    await refresh('faulty-post', current);
    expect(lastTokenRequest).toEqual({
      body: {
        grant_type: 'refresh_token',
        refresh_token: 'r',
        resource: 'https://api.example.com/',
        client_id: 'id:with space',
        client_secret: 's3cret/+=',
      },
    });
  });

  it('a 2xx answer without token_type is read as Bearer, so a rotated refresh token is kept', async () => {
    faultyMode = 'no-token-type';
    const current: TokenSet = { accessToken: 'a', tokenType: 'Bearer', refreshToken: 'r' };
    expect(await refresh('faulty', current)).toEqual({
      accessToken: 'fresh-access',
      tokenType: 'Bearer',
      expiresAt: local.clock.now() + 60_000,
      refreshToken: 'rotated',
    });
  });

  it('a refresh answer without a refresh token keeps the old one (the core, renewTokens)', async () => {
    faultyMode = 'no-refresh-token';
    const current: TokenSet = {
      accessToken: 'old-access',
      tokenType: 'Bearer',
      expiresAt: local.clock.now(),
      refreshToken: 'the-refresh-token',
    };
    const renewed = await renewTokens(
      { now: local.clock.now, logger },
      provider('faulty'),
      current,
    );
    expect(renewed).toEqual({
      accessToken: 'fresh-access',
      tokenType: 'Bearer',
      expiresAt: local.clock.now() + 60_000,
      refreshToken: 'the-refresh-token',
    });
  });
});
