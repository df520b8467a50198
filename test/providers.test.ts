import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ProviderRejectedError, ProviderUnavailableError } from '../shared/errors.ts';
import type { ResolvedProvider } from '../shared/providers/resolve.ts';
import { renewTokens } from '../shared/refresh.ts';
import { logger } from '../shared/logger.ts';
import { startTestBroker, type TestBroker } from './helpers/local.ts';

// Provider kinds against the sandbox providers over real HTTP (the documented contracts), and
// against small loopback servers for answer shapes the sandbox does not produce.
let local: TestBroker;
let quiqup: ResolvedProvider;
let quidkey: ResolvedProvider;

beforeAll(async () => {
  local = await startTestBroker();
  quiqup = local.broker.providers.get('quiqup')!;
  quidkey = local.broker.providers.get('quidkey')!;
});
afterAll(() => local.close());
afterEach(() => {
  local.sandboxes.quiqup.fault = undefined;
  local.sandboxes.quidkey.fault = undefined;
});

async function accepted(path: string, token: string): Promise<number> {
  const response = await fetch(`${local.url}/sandbox${path}`, {
    headers: { authorization: `Bearer ${token}` },
  });
  return response.status;
}

describe('Quiqup (client credentials)', () => {
  it('mints a token the sandbox API accepts, with the documented lifetime', async () => {
    const tokens = await quiqup.kind.mint!(quiqup.context);
    expect(tokens.tokenType).toBe('Bearer'); // Quiqup says "bearer"
    expect(tokens.expiresAt).toBe(local.clock.t + 3600 * 1000);
    expect(tokens.refreshToken).toBeUndefined();
    expect(await accepted('/quiqup/me', tokens.accessToken)).toBe(200);
    expect(await accepted('/quiqup/me', 'forged')).toBe(401);
  });

  it('also speaks the form encoding the docs list', async () => {
    const form = {
      ...quiqup,
      context: {
        ...quiqup.context,
        config: { ...(quiqup.context.config as object), tokenRequestEncoding: 'form' } as never,
      },
    };
    const tokens = await form.kind.mint!(form.context);
    expect(await accepted('/quiqup/me', tokens.accessToken)).toBe(200);
  });

  it('bad client credentials → provider_rejected with the OAuth error code', async () => {
    const wrong = {
      ...quiqup.context,
      secret: async () => ({ client_id: 'nobody', client_secret: 'wrong' }),
    };
    const error = await quiqup.kind.mint!(wrong).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ProviderRejectedError);
    expect((error as ProviderRejectedError).code).toBe('provider_rejected');
    expect((error as ProviderRejectedError).providerCode).toBe('invalid_client');
    expect((error as Error).message).not.toContain('wrong');
  });

  it.each([
    ['HTTP 500', { type: 'status', status: 500 } as const],
    ['HTTP 429', { type: 'status', status: 429 } as const],
    ['a body that is not JSON', { type: 'garbage' } as const],
    ['a timeout', { type: 'delay', ms: 1_000 } as const],
    [
      'a JSON body with no access token',
      { type: 'status', status: 200, body: '{"token_type":"bearer"}' } as const,
    ],
  ])('%s → provider_unavailable, retried (mint is safe to repeat)', async (_name, fault) => {
    local.sandboxes.quiqup.fault = fault;
    const before = local.sandboxes.quiqup.callCount('token');
    const error = await quiqup.kind.mint!(quiqup.context).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ProviderUnavailableError);
    expect(local.sandboxes.quiqup.callCount('token') - before).toBe(3); // 1 + 2 retries
  });
});

describe('Quidkey (client credentials + refresh endpoint, JSON envelope)', () => {
  it('mints access + refresh tokens from the envelope; refresh returns a new access token only', async () => {
    const minted = await quidkey.kind.mint!(quidkey.context);
    expect(minted.refreshToken).toBeTruthy();
    expect(minted.expiresAt).toBe(local.clock.t + 900 * 1000);
    expect(minted.refreshTokenExpiresAt).toBe(local.clock.t + 86_400 * 1000);
    expect(await accepted('/quidkey/api/v1/me', minted.accessToken)).toBe(200);

    local.clock.advance(850);
    const renewed = await renewTokens({ now: local.clock.now, logger }, quidkey, minted);
    expect(renewed.accessToken).not.toBe(minted.accessToken);
    expect(renewed.refreshToken).toBe(minted.refreshToken); // kept: none came back
    expect(renewed.refreshTokenExpiresAt).toBe(minted.refreshTokenExpiresAt);
    expect(await accepted('/quidkey/api/v1/me', renewed.accessToken)).toBe(200);
  });

  it('accepts a new refresh token in a refresh answer (as the API reference shows)', async () => {
    local.sandboxes.quidkey.refreshReturnsRefreshToken = true;
    try {
      const minted = await quidkey.kind.mint!(quidkey.context);
      const renewed = await renewTokens({ now: local.clock.now, logger }, quidkey, minted);
      expect(renewed.refreshToken).toBeTruthy();
      expect(renewed.refreshToken).not.toBe(minted.refreshToken);
    } finally {
      local.sandboxes.quidkey.refreshReturnsRefreshToken = false;
    }
  });

  it('falls back to client credentials when the refresh token is refused or has expired', async () => {
    const minted = await quidkey.kind.mint!(quidkey.context);
    const refused = await renewTokens({ now: local.clock.now, logger }, quidkey, {
      ...minted,
      refreshToken: 'sbx_quidkey.bogus.sig',
    });
    expect(refused.refreshToken).not.toBe('sbx_quidkey.bogus.sig');
    expect(await accepted('/quidkey/api/v1/me', refused.accessToken)).toBe(200);

    const refreshesBefore = local.sandboxes.quidkey.callCount('refresh');
    const tokensBefore = local.sandboxes.quidkey.callCount('token');
    local.clock.advance(86_401); // the refresh token's 24 hours are over: no refresh call at all
    await renewTokens({ now: local.clock.now, logger }, quidkey, minted);
    expect(local.sandboxes.quidkey.callCount('refresh')).toBe(refreshesBefore);
    expect(local.sandboxes.quidkey.callCount('token')).toBe(tokensBefore + 1);
  });

  it("bad client credentials → provider_rejected with Quidkey's error code", async () => {
    const wrong = {
      ...quidkey.context,
      secret: async () => ({ client_id: 'nobody', client_secret: 'wrong' }),
    };
    const error = await quidkey.kind.mint!(wrong).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ProviderRejectedError);
    expect((error as ProviderRejectedError).providerCode).toBe('INVALID_CLIENT');
  });

  it.each([
    ['HTTP 503', { type: 'status', status: 503 } as const],
    ['a body that is not JSON', { type: 'garbage' } as const],
    ['a timeout', { type: 'delay', ms: 1_000 } as const],
    [
      'a 200 that is not an envelope',
      { type: 'status', status: 200, body: '{"access_token":"x"}' } as const,
    ],
  ])('%s → provider_unavailable', async (_name, fault) => {
    local.sandboxes.quidkey.fault = fault;
    await expect(quidkey.kind.mint!(quidkey.context)).rejects.toBeInstanceOf(
      ProviderUnavailableError,
    );
  });
});

describe('answer shapes the sandbox does not make', () => {
  let server: Server;
  let base: string;
  let answer: { status: number; body: string };
  beforeAll(async () => {
    server = createServer((_req, res) =>
      res.writeHead(answer.status, { 'content-type': 'application/json' }).end(answer.body),
    );
    await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => new Promise<void>((done) => server.close(() => done())));

  it('reads the older Quidkey error envelope (error.errors, code UNAUTHORIZED)', async () => {
    answer = {
      status: 401,
      body: JSON.stringify({
        success: false,
        error: { code: 'UNAUTHORIZED', errors: [{ field: 'client_secret', message: 'bad' }] },
      }),
    };
    const context = { ...quidkey.context, baseUrl: base };
    const error = await quidkey.kind.mint!(context).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ProviderRejectedError);
    expect((error as ProviderRejectedError).providerCode).toBe('UNAUTHORIZED');
  });

  it('treats a success:false envelope with HTTP 200 as a refusal', async () => {
    answer = {
      status: 200,
      body: JSON.stringify({ success: false, error: { code: 'INVALID_INPUT', message: 'no' } }),
    };
    const error = await quidkey.kind.mint!({ ...quidkey.context, baseUrl: base }).catch(
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(ProviderRejectedError);
  });

  it("never copies a provider's error description into our message", async () => {
    answer = {
      status: 400,
      body: JSON.stringify({
        error: 'invalid_request',
        error_description: 'client_secret s3cr3t-value is malformed',
      }),
    };
    const error = await quiqup.kind.mint!({ ...quiqup.context, baseUrl: base }).catch(
      (e: unknown) => e,
    );
    expect((error as Error).message).toContain('invalid_request');
    expect((error as Error).message).not.toContain('s3cr3t');
  });

  it('does not retry a Quiqup refresh_token grant (a rotating provider may have used it up)', async () => {
    let calls = 0;
    const counting = createServer((_req, res) => {
      calls += 1;
      res.writeHead(503).end();
    });
    await new Promise<void>((done) => counting.listen(0, '127.0.0.1', done));
    const url = `http://127.0.0.1:${(counting.address() as AddressInfo).port}`;
    await expect(
      quiqup.kind.refresh!(
        { ...quiqup.context, baseUrl: url },
        { accessToken: 'a', tokenType: 'Bearer', refreshToken: 'r' },
      ),
    ).rejects.toBeInstanceOf(ProviderUnavailableError);
    expect(calls).toBe(1);
    await new Promise<void>((done) => counting.close(() => done()));
  });
});
