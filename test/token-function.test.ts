import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { TokenBrokerClient } from '../shared/client/index.ts';
import { setBroker } from '../shared/broker-core.ts';
import { captureOutput, startTestBroker, type TestBroker } from './helpers/local.ts';

// The token function as services call it: @aws-sdk/client-lambda → the offline runtime's Invoke
// API over HTTP → the Lambda handler → the embedded DynamoDB store and the sandbox providers.
let local: TestBroker;

beforeAll(async () => {
  local = await startTestBroker();
});
afterAll(() => local.close());
afterEach(() => {
  local.sandboxes.quiqup.fault = undefined;
  local.sandboxes.quidkey.fault = undefined;
});

const calls = (kind: 'quiqup' | 'quidkey', endpoint: string) =>
  local.sandboxes[kind].callCount(endpoint);

async function sandboxAccepts(kind: 'quiqup' | 'quidkey', authorization: string): Promise<boolean> {
  const path = kind === 'quiqup' ? '/sandbox/quiqup/me' : '/sandbox/quidkey/api/v1/me';
  const response = await fetch(`${local.url}${path}`, { headers: { authorization } });
  return response.status === 200;
}

describe('token: Quiqup', () => {
  it('mints on first use, then serves the stored token with no provider call, then renews after expiry', async () => {
    const first = await local.invoke({ provider: 'quiqup' });
    expect(first).toMatchObject({
      ok: true,
      provider: 'quiqup',
      connectionId: 'default',
      tokenType: 'Bearer',
    });
    expect(first.authorization).toBe(`Bearer ${first.accessToken}`);
    expect(new Date(first.expiresAt as string).getTime()).toBe(local.clock.t + 3600 * 1000);
    expect(await sandboxAccepts('quiqup', first.authorization as string)).toBe(true);
    const minted = calls('quiqup', 'token');

    local.clock.advance(600);
    const second = await local.invoke({ provider: 'quiqup', connectionId: 'default' });
    expect(second.accessToken).toBe(first.accessToken);
    expect(calls('quiqup', 'token')).toBe(minted);

    local.clock.advance(3001); // 1 s past expiry
    expect(await sandboxAccepts('quiqup', first.authorization as string)).toBe(false);
    const third = await local.invoke({ provider: 'quiqup' });
    expect(third.accessToken).not.toBe(first.accessToken);
    expect(calls('quiqup', 'token')).toBe(minted + 1);
    expect(await sandboxAccepts('quiqup', third.authorization as string)).toBe(true);
  });

  it('renews early when the token would not last minValiditySeconds, and on forceRefresh', async () => {
    const current = await local.invoke({ provider: 'quiqup' });
    const before = calls('quiqup', 'token');
    const remaining = (new Date(current.expiresAt as string).getTime() - local.clock.t) / 1000;
    const renewed = await local.invoke({ provider: 'quiqup', minValiditySeconds: remaining + 1 });
    expect(renewed.accessToken).not.toBe(current.accessToken);
    const forced = await local.invoke({ provider: 'quiqup', forceRefresh: true });
    expect(forced.accessToken).not.toBe(renewed.accessToken);
    expect(calls('quiqup', 'token')).toBe(before + 2);
  });

  it('shares one provider call among 20 concurrent calls in one container', async () => {
    await local.invoke({ provider: 'quiqup' });
    local.clock.advance(4000); // expired
    const before = calls('quiqup', 'token');
    const answers = await Promise.all(
      Array.from({ length: 20 }, () => local.invoke({ provider: 'quiqup' })),
    );
    expect(calls('quiqup', 'token')).toBe(before + 1);
    expect(new Set(answers.map((a) => a.accessToken)).size).toBe(1);
    expect(answers.every((a) => a.ok === true)).toBe(true);
  });
});

describe('token: Quidkey', () => {
  it('refreshes through /oauth2/refresh while the refresh token lives, and client credentials after', async () => {
    const first = await local.invoke({ provider: 'quidkey' });
    expect(await sandboxAccepts('quidkey', first.authorization as string)).toBe(true);
    const tokens = calls('quidkey', 'token');
    const refreshes = calls('quidkey', 'refresh');

    local.clock.advance(900 - 30); // within Quidkey's 60 s minValidity default
    const refreshed = await local.invoke({ provider: 'quidkey' });
    expect(refreshed.accessToken).not.toBe(first.accessToken);
    expect(calls('quidkey', 'refresh')).toBe(refreshes + 1);
    expect(calls('quidkey', 'token')).toBe(tokens);
    expect(await sandboxAccepts('quidkey', refreshed.authorization as string)).toBe(true);

    local.clock.advance(86_400); // the refresh token (24 h) is over too
    const reminted = await local.invoke({ provider: 'quidkey' });
    expect(calls('quidkey', 'refresh')).toBe(refreshes + 1);
    expect(calls('quidkey', 'token')).toBe(tokens + 1);
    expect(await sandboxAccepts('quidkey', reminted.authorization as string)).toBe(true);
  });

  it('falls back to client credentials when the sandbox refuses the refresh token', async () => {
    await local.invoke({ provider: 'quidkey' });
    local.clock.advance(1000);
    const refreshes = calls('quidkey', 'refresh');
    const tokens = calls('quidkey', 'token');
    // As after a revocation at the provider: the stored refresh token is one it no longer honours.
    const stored = (await local.broker.store.get('quidkey', 'default'))!;
    await local.broker.store.saveTokens(
      stored,
      { ...stored.tokens, refreshToken: 'sbx_quidkey.x.y' },
      local.clock.t,
    );
    const answer = await local.invoke({ provider: 'quidkey' });
    expect(answer.ok).toBe(true);
    expect(calls('quidkey', 'refresh')).toBe(refreshes + 1);
    expect(calls('quidkey', 'token')).toBe(tokens + 1);
    expect(await sandboxAccepts('quidkey', answer.authorization as string)).toBe(true);
  });
});

describe('token: errors', () => {
  beforeEach(async () => {
    // Start each case from a known state: a quidkey connection that has expired.
    await local.invoke({ provider: 'quidkey', forceRefresh: true });
  });

  it.each([
    ['a string', 'quidkey'],
    ['null', null],
    ['an array', [{ provider: 'quidkey' }]],
    ['no provider', {}],
    ['a provider that is not a string', { provider: 7 }],
    ['an unknown field', { provider: 'quidkey', token: 'x' }],
    ['a negative minValiditySeconds', { provider: 'quidkey', minValiditySeconds: -1 }],
    ['a fractional minValiditySeconds', { provider: 'quidkey', minValiditySeconds: 1.5 }],
    ['a string forceRefresh', { provider: 'quidkey', forceRefresh: 'yes' }],
    ['a connection id with a #', { provider: 'quidkey', connectionId: 'a#b' }],
  ])('%s → invalid_request, nothing written', async (_name, payload) => {
    const items = await local.itemCount();
    const answer = await local.invoke(payload);
    expect(answer).toMatchObject({ ok: false, error: { code: 'invalid_request' } });
    expect(typeof (answer.error as { message: string }).message).toBe('string');
    expect(await local.itemCount()).toBe(items);
  });

  it('unknown provider → unknown_provider; another client-credentials connection → not_found', async () => {
    expect(await local.invoke({ provider: 'github' })).toMatchObject({
      ok: false,
      error: { code: 'unknown_provider' },
    });
    expect(await local.invoke({ provider: 'quiqup', connectionId: 'alice' })).toMatchObject({
      ok: false,
      error: { code: 'not_found' },
    });
  });

  it('provider down and the stored token expired → provider_unavailable; the stored connection is kept', async () => {
    local.clock.advance(1000);
    const before = (await local.broker.store.get('quidkey', 'default'))!;
    for (const fault of [
      { type: 'status', status: 500 },
      { type: 'garbage' },
      { type: 'delay', ms: 1000 },
    ] as const) {
      local.sandboxes.quidkey.fault = fault;
      expect(await local.invoke({ provider: 'quidkey' })).toMatchObject({
        ok: false,
        error: { code: 'provider_unavailable' },
      });
    }
    local.sandboxes.quidkey.fault = undefined;
    const after = (await local.broker.store.get('quidkey', 'default'))!;
    expect(after.tokens).toEqual(before.tokens); // nothing lost or half-written
    expect(after.status).toBe('active');
    expect(after.lastError?.code).toBe('provider_unavailable');
    expect(after.lease).toBeUndefined(); // the lease was given back
    const recovered = await local.invoke({ provider: 'quidkey' });
    expect(recovered.ok).toBe(true);
    expect((await local.broker.store.get('quidkey', 'default'))!.lastError).toBeUndefined();
  });

  it('provider down but the stored token still valid → serves the stored token', async () => {
    const current = await local.invoke({ provider: 'quidkey' });
    local.clock.advance(900 - 30); // inside the 60 s renewal window, not expired
    local.sandboxes.quidkey.fault = { type: 'status', status: 503 };
    const answer = await local.invoke({ provider: 'quidkey' });
    expect(answer).toMatchObject({ ok: true, accessToken: current.accessToken });
    // …but not to a caller who just got a 401 with it.
    expect(await local.invoke({ provider: 'quidkey', forceRefresh: true })).toMatchObject({
      ok: false,
      error: { code: 'provider_unavailable' },
    });
  });

  it('provider refuses the client credentials → provider_rejected, the connection kept', async () => {
    local.clock.advance(100_000); // access and refresh token both expired: a mint is needed
    const secret = JSON.parse(readFileSync(join(local.dataDir, 'secrets.json'), 'utf8')).quidkey;
    local.sandboxes.quidkey.clients.set(secret.client_id, 'rotated-elsewhere');
    try {
      const answer = await local.invoke({ provider: 'quidkey' });
      expect(answer).toMatchObject({ ok: false, error: { code: 'provider_rejected' } });
      expect(JSON.stringify(answer)).not.toContain(secret.client_secret);
      expect((await local.broker.store.get('quidkey', 'default'))!.status).toBe('active');
    } finally {
      local.sandboxes.quidkey.clients.set(secret.client_id, secret.client_secret);
    }
  });

  it('an unexpected failure fails the invocation (Lambda Errors), with a generic message', async () => {
    setBroker(undefined); // the next invocation builds its broker from an environment with no table
    const table = process.env.BROKER_TABLE_NAME;
    delete process.env.BROKER_TABLE_NAME;
    try {
      // Lambda's report of an unhandled error; the details stay in the function's log.
      const { result, output } = await captureOutput(() => local.invoke({ provider: 'quidkey' }));
      expect(result).toEqual({
        errorType: 'BrokerInternalError',
        errorMessage: 'The broker failed unexpectedly; see its logs.',
      });
      // Logged for the operator, with the reason; the caller got the generic message.
      expect(output).toMatch(
        /"level":"ERROR","message":"request failed".*BROKER_TABLE_NAME is not set/,
      );
      const client = new TokenBrokerClient({ lambda: local.lambda });
      const failed = await captureOutput(() =>
        client.getToken({ provider: 'quidkey' }).catch((e: unknown) => e),
      );
      expect(failed.result).toMatchObject({ name: 'TokenBrokerError', code: 'internal_error' });
      // A bad request is still the caller's mistake, checked before the broker is built.
      const refused = await captureOutput(() => local.invoke({ provider: 'quidkey', extra: 1 }));
      expect(refused.result).toMatchObject({ ok: false, error: { code: 'invalid_request' } });
    } finally {
      if (table) process.env.BROKER_TABLE_NAME = table;
      setBroker(local.broker);
    }
  });
});

describe('token: logs', () => {
  it('no token or secret reaches any log line across mint, serve, refresh, re-mint and failures', async () => {
    const { result: answers, output } = await captureOutput(async () => {
      const seen = [];
      for (const provider of ['quiqup', 'quidkey']) {
        seen.push(await local.invoke({ provider, forceRefresh: true }));
        seen.push(await local.invoke({ provider }));
        local.clock.advance(3600);
        seen.push(await local.invoke({ provider }));
        local.clock.advance(90_000);
        seen.push(await local.invoke({ provider }));
      }
      local.sandboxes.quidkey.fault = { type: 'status', status: 500 };
      seen.push(await local.invoke({ provider: 'quidkey', forceRefresh: true }));
      local.sandboxes.quidkey.fault = undefined;
      seen.push(await local.invoke({ provider: 'quidkey', token: 'not-a-field' }));
      return seen;
    });
    expect(output).toContain('"provider":"quidkey"'); // the logs were captured at all
    const secrets = JSON.parse(readFileSync(join(local.dataDir, 'secrets.json'), 'utf8')) as Record<
      string,
      Record<string, string>
    >;
    const forbidden = [
      ...answers.flatMap((a) => [a.accessToken as string | undefined]),
      ...Object.values(secrets).map((s) => s.client_secret),
    ].filter((value): value is string => typeof value === 'string');
    const stored = (await local.broker.store.get('quidkey', 'default'))!;
    forbidden.push(stored.tokens.refreshToken!);
    expect(forbidden.length).toBeGreaterThan(8);
    for (const value of forbidden) {
      expect(output).not.toContain(value);
      // Sandbox tokens are payload.signature: no part of one may appear either.
      for (const part of value.split('.').filter((p) => p.length > 20))
        expect(output).not.toContain(part);
    }
  });
});
