import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CreateTableCommand, DynamoDBClient, waitUntilTableExists } from '@aws-sdk/client-dynamodb';
import type { EventBridgeClient, PutEventsCommand } from '@aws-sdk/client-eventbridge';
import { DynamoDBDocumentClient, GetCommand, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import dynalite from 'dynalite';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parseConfig } from '../shared/config.ts';
import { EventBridgePublisher, type LifecycleEvent } from '../shared/events.ts';
import type { TokenSet } from '../shared/providers/types.ts';
import { nextDueAt } from '../shared/refresh.ts';
import { PROVIDER_FAILURE_LIMIT, type RefreshSummary } from '../shared/refresher.ts';
import type { Connection } from '../shared/store/connection-store.ts';
import { allDueShards, connectionPk, createTableInput, dueIndex } from '../shared/store/table.ts';
import { consentTokens, testKinds } from './helpers/consent-kind.ts';
import { startContainer, type Container } from './helpers/containers.ts';
import { captureOutput, startTestBroker, type TestBroker } from './helpers/local.ts';

// The scheduled refresher against the real offline runtime: the embedded store with its due
// index, the sandbox providers over HTTP, a shared test clock, and the refresher invoked as the
// schedule (or a person) would invoke it.
let local: TestBroker;
const containers: Container[] = [];

const config = () =>
  parseConfig(
    {
      // Small caps, so per-provider fairness shows with a handful of connections.
      refresh: { concurrency: 4, perProviderConcurrency: 2 },
      providers: {
        quiqup: { catalog: 'quiqup', environment: 'sandbox' },
        quidkey: { catalog: 'quidkey', environment: 'sandbox', refreshLeadSeconds: 60 },
        // User-consent providers (test-only kind, see helpers/consent-kind.ts): one renews through
        // the Quidkey sandbox, one through the Quiqup sandbox (so Quiqup's outage reaches it), one
        // asks for re-consent an hour before the refresh token ends.
        consent: { kind: 'test-consent', environment: 'sandbox', via: 'quidkey' },
        'consent-q': {
          kind: 'test-consent',
          environment: 'sandbox',
          via: 'quiqup',
          timeoutMs: 2000,
        },
        'consent-ending': {
          kind: 'test-consent',
          environment: 'sandbox',
          via: 'quidkey',
          reauthLeadSeconds: 3600,
        },
      },
    },
    { kinds: testKinds },
  );

// A fresh runtime per test: an empty table, fresh sandbox counts, no earlier events.
beforeEach(async () => {
  local = await startTestBroker({ config: config(), kinds: testKinds });
});
afterEach(async () => {
  for (const container of containers.splice(0)) container.close();
  await local.close();
});

/** A run as the schedule starts it, with its whole timeout ahead of it. */
const runRefresher = (broker = local.broker): Promise<RefreshSummary> =>
  broker.refresher.run({ remainingMs: () => 300_000 });

const get = async (provider: string, connectionId = 'default'): Promise<Connection> =>
  (await local.broker.store.get(provider, connectionId))!;

async function sandboxAccepts(kind: 'quiqup' | 'quidkey', authorization: string): Promise<boolean> {
  const path = kind === 'quiqup' ? '/sandbox/quiqup/me' : '/sandbox/quidkey/api/v1/me';
  const response = await fetch(`${local.url}${path}`, { headers: { authorization } });
  return response.status === 200;
}

/** A user-consent connection as a finished connect flow stores it (in the due index). */
async function createConsentConnection(
  providerId: string,
  connectionId: string,
  changes: Partial<TokenSet> = {},
): Promise<Connection> {
  const provider = local.broker.providers.get(providerId)!;
  const tokens = { ...(await consentTokens(local)), ...changes };
  return local.broker.store.create(
    providerId,
    connectionId,
    tokens,
    local.clock.t,
    nextDueAt(provider, tokens),
  );
}

/** Lifecycle events as the offline runtime serves them at GET /local/events (newest first). */
async function servedEvents(): Promise<LifecycleEvent[]> {
  const response = await fetch(`${local.url}/local/events`);
  expect(response.status).toBe(200);
  return (await response.json()) as LifecycleEvent[];
}

/** Every connection the due index would hand the refresher, however far ahead. */
async function dueIndexHolds(provider: string, connectionId: string): Promise<boolean> {
  for (const shard of allDueShards()) {
    let page: Record<string, unknown> | undefined;
    do {
      const result = await local.broker.store.queryDue(shard, Number.MAX_SAFE_INTEGER, {
        ...(page ? { page } : {}),
      });
      if (
        result.connections.some((c) => c.provider === provider && c.connectionId === connectionId)
      )
        return true;
      page = result.nextPage;
    } while (page);
  }
  return false;
}

const revokedRefreshToken = 'sbx_quidkey.revoked.at-the-provider';

describe('refresher: renews ahead of expiry', () => {
  it('keeps every connection renewed before it expires, so token calls never wait on a provider', async () => {
    await local.invoke({ provider: 'quiqup' });
    await local.invoke({ provider: 'quidkey' });
    await createConsentConnection('consent', 'alice');
    const targets = [
      { provider: 'quiqup', connectionId: 'default', kind: 'quiqup', leadMs: 300_000 },
      { provider: 'quidkey', connectionId: 'default', kind: 'quidkey', leadMs: 60_000 },
      { provider: 'consent', connectionId: 'alice', kind: 'quidkey', leadMs: 300_000 },
    ] as const;
    const providerCalls = () =>
      local.sandboxes.quiqup.callCount('token') +
      local.sandboxes.quidkey.callCount('token') +
      local.sandboxes.quidkey.callCount('refresh');

    let renewals = 0;
    // Three simulated hours: the refresher every 5 minutes (refresh.scheduleMinutes), a token call
    // for each connection every minute in between.
    for (let minute = 1; minute <= 180; minute += 1) {
      local.clock.advance(60);
      if (minute % 5 === 0) {
        const before = await Promise.all(targets.map((t) => get(t.provider, t.connectionId)));
        const calls = providerCalls();
        const summary = await local.invokeFunction('refresher', {});
        const after = await Promise.all(targets.map((t) => get(t.provider, t.connectionId)));
        let renewedNow = 0;
        after.forEach((connection, i) => {
          if (connection.tokens.accessToken === before[i]!.tokens.accessToken) return;
          renewedNow += 1;
          // Renewed while the old token still had at least its lead left.
          expect(before[i]!.tokens.expiresAt! - local.clock.t).toBeGreaterThanOrEqual(
            targets[i]!.leadMs,
          );
        });
        expect(summary).toMatchObject({ refreshed: renewedNow, failed: 0, needsReauth: 0 });
        expect(providerCalls() - calls).toBe(renewedNow);
        renewals += renewedNow;
        continue;
      }
      const calls = providerCalls();
      for (const target of targets) {
        const answer = await local.invoke({
          provider: target.provider,
          connectionId: target.connectionId,
        });
        expect(answer.ok).toBe(true);
        expect(new Date(answer.expiresAt as string).getTime() - local.clock.t).toBeGreaterThan(
          60_000,
        );
        if (minute % 30 === 1) {
          expect(await sandboxAccepts(target.kind, answer.authorization as string)).toBe(true);
        }
      }
      expect(providerCalls()).toBe(calls); // served from the store, no provider call
    }
    // Quiqup lives 1 h, Quidkey and the consent 15 min: ~3 + 12 + 12 renewals in 3 hours.
    expect(renewals).toBeGreaterThanOrEqual(25);
  });

  it('a connection due early but still fresh is rescheduled from its tokens, not read again each run', async () => {
    // As a token call's failed renewal leaves it: a short backoff on a token with hours left.
    const connection = await createConsentConnection('consent', 'early', {
      expiresAt: local.clock.t + 3 * 3600_000,
    });
    const holder = 'token-call';
    const leased = await local.broker.store.acquireLease(connection, holder, local.clock.t, 30_000);
    await local.broker.store.recordFailure(
      leased,
      holder,
      {
        error: { code: 'provider_unavailable', message: 'down' },
        needsReauth: false,
        retryAt: local.clock.t + 60_000,
      },
      local.clock.t,
    );
    local.clock.advance(120);
    const calls = local.sandboxes.quidkey.callCount();
    expect(await runRefresher()).toMatchObject({ due: 1, refreshed: 0, skipped: 1, failed: 0 });
    const rescheduled = await get('consent', 'early');
    expect(rescheduled.dueAt).toBe(
      nextDueAt(local.broker.providers.get('consent')!, rescheduled.tokens),
    );
    expect(rescheduled.version).toBe(leased.version + 1); // the failure's write only
    expect(await runRefresher()).toMatchObject({ due: 0, skipped: 0 });
    expect(local.sandboxes.quidkey.callCount()).toBe(calls);
  });

  it('invoked by hand through the Invoke API, renews what is due and answers and logs its summary', async () => {
    await local.invoke({ provider: 'quidkey' });
    local.clock.advance(600); // expires within this run's window (5 min) plus its 60 s lead
    const before = await get('quidkey');
    const { result, output } = await captureOutput(() => local.invokeFunction('refresher', {}));
    expect(result).toEqual({
      due: 1,
      refreshed: 1,
      failed: 0,
      needsReauth: 0,
      skipped: 0,
      durationMs: expect.any(Number),
    });
    expect(output).toMatch(/"message":"refresher run".*"due":1.*"refreshed":1/);
    const after = await get('quidkey');
    expect(after.tokens.accessToken).not.toBe(before.tokens.accessToken);
    expect(after.dueAt).toBe(after.tokens.expiresAt! - 60_000);
    // Nothing is due now: a second run finds nothing and calls nobody.
    const calls = local.sandboxes.quidkey.callCount();
    expect(await local.invokeFunction('refresher', {})).toMatchObject({ due: 0, refreshed: 0 });
    expect(local.sandboxes.quidkey.callCount()).toBe(calls);
  });
});

describe('refresher: failure policy', () => {
  it('transient failures (503, timeout, garbage) keep the connection active, count and back off, and say so', async () => {
    await local.invoke({ provider: 'quidkey' });
    local.clock.advance(600); // due
    const stored = await get('quidkey');
    const faults = [
      { type: 'status', status: 503 },
      { type: 'delay', ms: 1000 }, // past the 400 ms provider timeout of the test runtime
      { type: 'garbage' },
    ] as const;
    for (const [i, fault] of faults.entries()) {
      local.sandboxes.quidkey.fault = fault;
      const summary = await runRefresher();
      expect(summary).toMatchObject({ due: 1, refreshed: 0, failed: 1, needsReauth: 0 });
      const failed = await get('quidkey');
      expect(failed).toMatchObject({
        status: 'active',
        refreshFailures: i + 1,
        lastError: { code: 'provider_unavailable' },
      });
      expect(failed.tokens).toEqual(stored.tokens); // the stored tokens are untouched
      expect(failed.lease).toBeUndefined();
      // Backoff: 1 min doubling per failure, jittered into its upper half.
      const ceiling = 60_000 * 2 ** i;
      expect(failed.dueAt! - local.clock.t).toBeGreaterThanOrEqual(ceiling / 2);
      expect(failed.dueAt! - local.clock.t).toBeLessThanOrEqual(ceiling);
      const [event] = await servedEvents();
      expect(event).toMatchObject({
        type: 'Connection Refresh Failed',
        provider: 'quidkey',
        connectionId: 'default',
        status: 'active',
        code: 'provider_unavailable',
      });
    }
    // The token is still valid: a token call serves it meanwhile.
    const served = await local.invoke({ provider: 'quidkey', minValiditySeconds: 0 });
    expect(served.accessToken).toBe(stored.tokens.accessToken);

    local.sandboxes.quidkey.fault = undefined;
    expect(await runRefresher()).toMatchObject({ due: 1, refreshed: 1, failed: 0 });
    const recovered = await get('quidkey');
    expect(recovered.refreshFailures).toBe(0);
    expect(recovered.lastError).toBeUndefined();
    expect(recovered.dueAt).toBe(recovered.tokens.expiresAt! - 60_000);
  });

  it('client credentials: a refused refresh token is replaced by a fresh mint; a refused mint stays active with a backoff', async () => {
    await local.invoke({ provider: 'quidkey' });
    await local.invoke({ provider: 'quiqup' });
    local.clock.advance(3400); // both due
    // Quidkey no longer honours the stored refresh token (revoked at the provider).
    const quidkey = await get('quidkey');
    await local.broker.store.saveTokens(
      quidkey,
      { ...quidkey.tokens, refreshToken: revokedRefreshToken },
      local.clock.t,
      { dueAt: quidkey.dueAt! },
    );
    // Quiqup's client secret was rotated at the provider but not in the broker's secrets.
    const secret = JSON.parse(readFileSync(join(local.dataDir, 'secrets.json'), 'utf8')).quiqup;
    local.sandboxes.quiqup.clients.set(secret.client_id, 'rotated-at-the-provider');
    const quiqup = await get('quiqup');
    const mints = local.sandboxes.quidkey.callCount('token');

    expect(await runRefresher()).toMatchObject({ due: 2, refreshed: 1, failed: 1, needsReauth: 0 });

    const reminted = await get('quidkey');
    expect(local.sandboxes.quidkey.callCount('token')).toBe(mints + 1);
    expect(reminted.status).toBe('active');
    expect(reminted.tokens.refreshToken).not.toBe(revokedRefreshToken);
    const answer = await local.invoke({ provider: 'quidkey' });
    expect(await sandboxAccepts('quidkey', answer.authorization as string)).toBe(true);

    const refused = await get('quiqup');
    expect(refused).toMatchObject({
      status: 'active', // a person cannot fix a client secret by reconnecting
      refreshFailures: 1,
      lastError: { code: 'provider_rejected' },
    });
    expect(refused.tokens).toEqual(quiqup.tokens);
    expect(refused.dueAt! - local.clock.t).toBeGreaterThanOrEqual(30_000);
    expect(refused.dueAt! - local.clock.t).toBeLessThanOrEqual(60_000);
    expect(await servedEvents()).toContainEqual(
      expect.objectContaining({
        type: 'Connection Refresh Failed',
        provider: 'quiqup',
        status: 'active',
        code: 'provider_rejected',
      }),
    );
    expect(JSON.stringify(await servedEvents())).not.toContain(secret.client_secret);

    local.sandboxes.quiqup.clients.set(secret.client_id, secret.client_secret);
    expect(await runRefresher()).toMatchObject({ due: 1, refreshed: 1, failed: 0 });
    expect((await get('quiqup')).refreshFailures).toBe(0);
  });

  it('user consent refused by the provider → needs_reauth, out of the due index, token answers needs_reauth', async () => {
    const carol = await createConsentConnection('consent', 'carol', {
      refreshToken: revokedRefreshToken,
    });
    expect(await dueIndexHolds('consent', 'carol')).toBe(true);
    local.clock.advance(700); // due
    const refreshes = local.sandboxes.quidkey.callCount('refresh');

    expect(await runRefresher()).toMatchObject({ due: 1, refreshed: 0, failed: 0, needsReauth: 1 });

    expect(local.sandboxes.quidkey.callCount('refresh')).toBe(refreshes + 1); // asked once
    const stored = await get('consent', 'carol');
    expect(stored).toMatchObject({
      status: 'needs_reauth',
      lastError: { code: 'provider_rejected' },
    });
    expect(stored.dueAt).toBeUndefined();
    expect(stored.tokens).toEqual(carol.tokens);
    expect(await dueIndexHolds('consent', 'carol')).toBe(false);
    expect(await local.invoke({ provider: 'consent', connectionId: 'carol' })).toMatchObject({
      ok: false,
      error: { code: 'needs_reauth' },
    });
    const [event] = await servedEvents();
    expect(event).toMatchObject({
      type: 'Connection Needs Reauth',
      provider: 'consent',
      connectionId: 'carol',
      status: 'needs_reauth',
      code: 'provider_rejected',
    });
    // Out of the index: later runs do not read it or ask the provider again.
    local.clock.advance(3600);
    expect(await runRefresher()).toMatchObject({ due: 0, needsReauth: 0 });
    expect(local.sandboxes.quidkey.callCount('refresh')).toBe(refreshes + 1);
  });

  it('user consent refused for a reason other than the grant (our client secret, a 403) → stays active with a backoff, not needs_reauth', async () => {
    const gina = await createConsentConnection('consent-q', 'gina');
    const hugo = await createConsentConnection('consent', 'hugo');
    local.clock.advance(700); // both due
    // Quidkey's refresh carries no client credentials, so the refusals are injected as the
    // providers send them: Quiqup's answer to a rotated client secret, and a quota/WAF 403.
    local.sandboxes.quiqup.fault = {
      type: 'status',
      status: 401,
      body: '{"error":"invalid_client","error_description":"Client authentication failed"}',
    };
    local.sandboxes.quidkey.fault = {
      type: 'status',
      status: 403,
      body: '{"success":false,"error":{"code":"FORBIDDEN","message":"Quota exceeded"}}',
    };

    expect(await runRefresher()).toMatchObject({ due: 2, refreshed: 0, failed: 2, needsReauth: 0 });

    const events = await servedEvents();
    for (const [provider, connectionId, before] of [
      ['consent-q', 'gina', gina],
      ['consent', 'hugo', hugo],
    ] as const) {
      const stored = await get(provider, connectionId);
      expect(stored).toMatchObject({
        status: 'active', // reconnecting would not fix it
        refreshFailures: 1,
        lastError: { code: 'provider_rejected' },
      });
      expect(stored.tokens).toEqual(before.tokens);
      expect(stored.dueAt! - local.clock.t).toBeGreaterThanOrEqual(30_000);
      expect(stored.dueAt! - local.clock.t).toBeLessThanOrEqual(60_000);
      expect(await dueIndexHolds(provider, connectionId)).toBe(true);
      expect(events).toContainEqual(
        expect.objectContaining({
          type: 'Connection Refresh Failed',
          provider,
          connectionId,
          status: 'active',
          code: 'provider_rejected',
        }),
      );
    }
    expect(events.map((event) => event.type)).not.toContain('Connection Needs Reauth');
    expect(
      await local.invoke({ provider: 'consent', connectionId: 'hugo', minValiditySeconds: 0 }),
    ).toMatchObject({ ok: true, accessToken: hugo.tokens.accessToken });

    // Once the provider accepts us again, the next run after the backoff renews it.
    local.sandboxes.quidkey.fault = undefined;
    local.sandboxes.quiqup.fault = undefined;
    local.clock.advance(60);
    expect(await runRefresher()).toMatchObject({ refreshed: 1, needsReauth: 0 });
    expect(await get('consent', 'hugo')).toMatchObject({ status: 'active', refreshFailures: 0 });
  });

  it('user consent, transient failure → stays active and due again after the backoff', async () => {
    await createConsentConnection('consent', 'dana');
    local.clock.advance(700);
    local.sandboxes.quidkey.fault = { type: 'status', status: 503 };
    expect(await runRefresher()).toMatchObject({ due: 1, failed: 1, needsReauth: 0 });
    const stored = await get('consent', 'dana');
    expect(stored).toMatchObject({ status: 'active', refreshFailures: 1 });
    expect(await dueIndexHolds('consent', 'dana')).toBe(true);
    local.sandboxes.quidkey.fault = undefined;
  });

  it('a consent within reauthLeadSeconds of its refresh token end → needs_reauth ahead of time, with no provider call', async () => {
    // Ends in 30 min, inside the provider's 1 h re-consent lead, though the access token is fresh.
    await createConsentConnection('consent-ending', 'erin', {
      refreshTokenExpiresAt: local.clock.t + 30 * 60_000,
    });
    // Same provider, a consent with a day left: not due, untouched.
    const frank = await createConsentConnection('consent-ending', 'frank');
    const calls = local.sandboxes.quidkey.callCount();

    expect(await runRefresher()).toMatchObject({ due: 1, refreshed: 0, needsReauth: 1 });

    expect(local.sandboxes.quidkey.callCount()).toBe(calls);
    expect(await get('consent-ending', 'erin')).toMatchObject({
      status: 'needs_reauth',
      lastError: { code: 'needs_reauth' },
    });
    expect(await dueIndexHolds('consent-ending', 'erin')).toBe(false);
    expect(await get('consent-ending', 'frank')).toEqual(frank);
    expect((await servedEvents())[0]).toMatchObject({
      type: 'Connection Needs Reauth',
      provider: 'consent-ending',
      connectionId: 'erin',
      code: 'needs_reauth',
    });
  });

  it('a due connection whose tokens cannot be decrypted fails alone: the others are renewed, the run resolves, it is set aside an hour', async () => {
    await createConsentConnection('consent', 'unreadable');
    const good = await createConsentConnection('consent', 'good');
    // Its tokens no longer decrypt (as if restored under another key): another item's ciphertext.
    const db = DynamoDBDocumentClient.from(local.dynamo);
    const raw = async (connectionId: string) =>
      (
        await db.send(
          new GetCommand({
            TableName: local.tableName,
            Key: { pk: connectionPk('consent', connectionId) },
            ConsistentRead: true,
          }),
        )
      ).Item!;
    const foreign = (await raw('good')).tokens as string;
    await db.send(
      new UpdateCommand({
        TableName: local.tableName,
        Key: { pk: connectionPk('consent', 'unreadable') },
        UpdateExpression: 'SET tokens = :t',
        ExpressionAttributeValues: { ':t': foreign },
      }),
    );
    const before = await raw('unreadable');
    local.clock.advance(700); // both due

    const { result, output } = await captureOutput(() => runRefresher());

    expect(result).toEqual({
      due: 2,
      refreshed: 1,
      failed: 1,
      needsReauth: 0,
      skipped: 0,
      durationMs: expect.any(Number),
    });
    const renewed = await get('consent', 'good');
    expect(renewed.tokens.accessToken).not.toBe(good.tokens.accessToken);
    const setAside = await raw('unreadable');
    expect(setAside).toMatchObject({
      status: 'active',
      version: before.version, // tokens untouched: no version bump
      tokens: foreign,
      dueAt: local.clock.t + 3600_000,
      lastError: {
        code: 'internal_error',
        message: 'The stored tokens could not be decrypted.',
        at: local.clock.t,
      },
    });
    expect(output).toMatch(
      /"message":"stored tokens could not be decrypted".*"connectionId":"unreadable"/,
    );
    expect(output).not.toContain(foreign);
    expect((await servedEvents())[0]).toMatchObject({
      type: 'Connection Refresh Failed',
      provider: 'consent',
      connectionId: 'unreadable',
      status: 'active',
      code: 'internal_error',
    });

    // No longer heads its shard: the next run does not read it; an hour on, it is tried again.
    expect(await runRefresher()).toMatchObject({ due: 0, failed: 0 });
    local.clock.advance(3600);
    const again = await captureOutput(() => runRefresher());
    expect(again.result).toMatchObject({ failed: 1 });
    expect(again.output).toMatch(
      /"level":"ERROR","message":"stored tokens could not be decrypted"/,
    );
    expect((await raw('unreadable')).dueAt).toBe(local.clock.t + 3600_000);
  });
});

describe("refresher: one provider's outage does not starve the others", () => {
  it('with Quiqup down (503), every due Quidkey-backed connection is renewed in the same run; the summary is exact', async () => {
    await local.invoke({ provider: 'quiqup' });
    await local.invoke({ provider: 'quidkey' });
    local.clock.advance(2800);
    for (const id of ['alice', 'bob']) await createConsentConnection('consent', id);
    await createConsentConnection('consent', 'carol', { refreshToken: revokedRefreshToken });
    const dave = await createConsentConnection('consent', 'dave');
    await createConsentConnection('consent', 'erin', { expiresAt: local.clock.t + 86_400_000 });
    for (const id of ['x1', 'x2']) await createConsentConnection('consent-q', id);
    local.clock.advance(700); // everything but erin is due within this run's window
    // dave is being renewed by another container right now; a provider was removed from the
    // configuration but its connection is still in the table.
    await local.broker.store.acquireLease(dave, 'another-container', local.clock.t, 30_000);
    const retired = await consentTokens(local);
    await local.broker.store.create('retired', 'old', retired, local.clock.t, local.clock.t);
    const before = await Promise.all(['alice', 'bob'].map((id) => get('consent', id)));
    local.sandboxes.quiqup.fault = { type: 'status', status: 503 };

    const summary = await runRefresher();

    expect(summary).toEqual({
      due: 9, // quiqup, quidkey, alice, bob, carol, dave, x1, x2, retired/old
      refreshed: 3, // quidkey, alice, bob
      failed: 3, // quiqup, x1, x2 (Quiqup is down)
      needsReauth: 1, // carol
      skipped: 2, // dave (leased elsewhere), retired/old (no such provider any more)
      durationMs: expect.any(Number),
    });
    for (const [i, id] of ['alice', 'bob'].entries()) {
      const renewed = await get('consent', id);
      expect(renewed.tokens.accessToken).not.toBe(before[i]!.tokens.accessToken);
      const answer = await local.invoke({ provider: 'consent', connectionId: id });
      expect(await sandboxAccepts('quidkey', answer.authorization as string)).toBe(true);
    }
    for (const [provider, id] of [
      ['quiqup', 'default'],
      ['consent-q', 'x1'],
      ['consent-q', 'x2'],
    ] as const) {
      expect(await get(provider, id)).toMatchObject({ status: 'active', refreshFailures: 1 });
    }
    expect((await get('consent', 'dave')).lease?.holder).toBe('another-container');
    const events = await servedEvents();
    expect(events.filter((e) => e.type === 'Connection Refresh Failed')).toHaveLength(3);
    expect(events.filter((e) => e.type === 'Connection Needs Reauth')).toEqual([
      expect.objectContaining({ provider: 'consent', connectionId: 'carol' }),
    ]);
  });

  it('a provider that hangs holds at most its own share of the run; the others are renewed at once', async () => {
    // Twelve connections behind a hanging Quiqup (each call times out after 2 s), six healthy.
    for (let i = 0; i < 12; i += 1) await createConsentConnection('consent-q', `hung-${i}`);
    for (let i = 0; i < 6; i += 1) await createConsentConnection('consent', `ok-${i}`);
    local.clock.advance(700);
    local.sandboxes.quiqup.fault = { type: 'delay', ms: 4000 };
    // The run may start work only in its first second (as if its Lambda timeout were that
    // close): healthy renewals queued behind the hanging ones would not get to start.
    const stopMarginMs = local.broker.config.refresh.stopBeforeTimeoutSeconds * 1000;
    const startWorkUntil = Date.now() + 1000;
    const started = Date.now();
    const summary = await local.broker.refresher.run({
      remainingMs: () => stopMarginMs + startWorkUntil - Date.now(),
    });
    const elapsedMs = Date.now() - started;

    const cap = local.broker.config.refresh.perProviderConcurrency;
    expect(summary.due).toBe(18);
    expect(summary.refreshed).toBe(6);
    expect(summary.failed).toBeGreaterThanOrEqual(1);
    expect(summary.failed).toBeLessThanOrEqual(cap); // only its first share started
    expect(summary.failed + summary.skipped).toBe(12);
    expect(elapsedMs).toBeLessThan(3 * 2000); // it did not wait out twelve timeouts
    for (let i = 0; i < 6; i += 1) {
      expect((await get('consent', `ok-${i}`)).lastRefreshedAt).toBe(local.clock.t);
    }
    local.sandboxes.quiqup.fault = undefined;
  });

  it(`after ${PROVIDER_FAILURE_LIMIT} transient failures in a row a provider gets no more calls in the run`, async () => {
    for (let i = 0; i < 12; i += 1) await createConsentConnection('consent-q', `down-${i}`);
    local.clock.advance(700);
    local.sandboxes.quiqup.fault = { type: 'status', status: 503 };
    const calls = local.sandboxes.quiqup.callCount('token');

    const summary = await runRefresher();

    const cap = local.broker.config.refresh.perProviderConcurrency;
    // Renewals already under way when the limit is reached still finish (at most cap - 1).
    expect(summary.failed).toBeGreaterThanOrEqual(PROVIDER_FAILURE_LIMIT);
    expect(summary.failed).toBeLessThanOrEqual(PROVIDER_FAILURE_LIMIT + cap - 1);
    expect(summary).toMatchObject({ due: 12, refreshed: 0, skipped: 12 - summary.failed });
    // One call per failed renewal (an OAuth refresh is never retried), none for the rest.
    expect(local.sandboxes.quiqup.callCount('token') - calls).toBe(summary.failed);
    const after = await Promise.all(
      Array.from({ length: 12 }, (_, i) => get('consent-q', `down-${i}`)),
    );
    expect(after.filter((c) => c.refreshFailures === 1)).toHaveLength(summary.failed);
    // The skipped ones are still due, for the next run.
    expect(after.filter((c) => c.refreshFailures === 0 && c.dueAt! <= local.clock.t)).toHaveLength(
      summary.skipped,
    );
    local.sandboxes.quiqup.fault = undefined;
  });
});

describe('refresher: reads the due index only', () => {
  it('queries each shard of the due index, never scans, and reads only the due connections', async () => {
    for (let i = 0; i < 3; i += 1) await createConsentConnection('consent', `due-${i}`);
    local.clock.advance(700);
    for (let i = 0; i < 5; i += 1) {
      await createConsentConnection('consent', `later-${i}`); // due in 10 minutes: not this run
    }
    await local.invoke({ provider: 'quiqup' }); // due in 55 minutes
    const container = await startContainer(local);
    containers.push(container);

    const summary = await runRefresher(container.broker);

    expect(summary).toMatchObject({ due: 3, refreshed: 3 });
    const names = container.commands.map((c) => c.name);
    expect(names).not.toContain('ScanCommand');
    expect(new Set(names)).toEqual(new Set(['QueryCommand', 'UpdateItemCommand']));
    const queries = container.commands.filter((c) => c.name === 'QueryCommand');
    expect(queries).toHaveLength(dueIndex.shards);
    expect(
      new Set(
        queries.map((q) => (q.input.ExpressionAttributeValues as { ':shard': string })[':shard']),
      ),
    ).toEqual(new Set(allDueShards()));
    for (const query of queries) {
      expect(query.input).toMatchObject({ IndexName: 'due', Limit: 100 });
    }
    expect(queries.reduce((sum, q) => sum + q.itemsRead!, 0)).toBe(3);
    expect(await local.itemCount()).toBe(9); // the table holds more than was read
    // Per due connection: take the lease, write the renewed tokens. No other reads.
    expect(names.filter((n) => n === 'UpdateItemCommand')).toHaveLength(6);
  });
});

describe('lifecycle events', () => {
  it('go to EventBridge with source oauth-token-broker and the type as detail-type, never a token', async () => {
    const sent: PutEventsCommand['input'][] = [];
    const client = {
      send: async (command: PutEventsCommand) => {
        sent.push(command.input);
        return { FailedEntryCount: 0, Entries: [{ EventId: '1' }] };
      },
    } as unknown as EventBridgeClient;
    const container = await startContainer(local, {
      events: new EventBridgePublisher(client, 'broker-events'),
    });
    containers.push(container);
    const carol = await createConsentConnection('consent', 'carol', {
      refreshToken: revokedRefreshToken,
    });
    local.clock.advance(700);

    expect(await runRefresher(container.broker)).toMatchObject({ needsReauth: 1 });

    expect(sent).toHaveLength(1);
    const [entry] = sent[0]!.Entries!;
    expect(entry).toMatchObject({
      Source: 'oauth-token-broker',
      DetailType: 'Connection Needs Reauth',
      EventBusName: 'broker-events',
      Time: new Date(local.clock.t),
    });
    expect(JSON.parse(entry!.Detail!)).toEqual({
      provider: 'consent',
      connectionId: 'carol',
      status: 'needs_reauth',
      code: 'provider_rejected',
      reason: expect.stringContaining('refused'),
      at: new Date(local.clock.t).toISOString(),
    });
    expect(entry!.Detail).not.toContain(carol.tokens.accessToken);
    expect(entry!.Detail).not.toContain('revoked');
  });

  it('an event that cannot be published does not undo or fail the renewal it reports', async () => {
    const container = await startContainer(local, {
      events: {
        publish: async () => {
          throw new Error('EventBridge is unreachable');
        },
      },
    });
    containers.push(container);
    await createConsentConnection('consent', 'carol', { refreshToken: revokedRefreshToken });
    local.clock.advance(700);
    expect(await runRefresher(container.broker)).toMatchObject({ due: 1, needsReauth: 1 });
    expect((await get('consent', 'carol')).status).toBe('needs_reauth');
  });
});

describe('offline runtime: the due index', () => {
  it('refuses, with a clear message, a persisted table created before the due index existed', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'broker-old-table-'));
    try {
      // An older broker's table, on disk: the key schema only, no indexes.
      const old = dynalite({ path: join(dataDir, 'dynalite'), createTableMs: 0 });
      await new Promise<void>((done) => old.listen(0, '127.0.0.1', done));
      const port = (old.address() as { port: number }).port;
      const dynamo = new DynamoDBClient({
        endpoint: `http://127.0.0.1:${port}`,
        region: 'local',
        credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
      });
      const { GlobalSecondaryIndexes: _indexes, ...withoutIndexes } =
        createTableInput('oauth-token-broker');
      await dynamo.send(
        new CreateTableCommand({
          ...withoutIndexes,
          AttributeDefinitions: [{ AttributeName: 'pk', AttributeType: 'S' }],
        }),
      );
      await waitUntilTableExists(
        { client: dynamo, maxWaitTime: 10, minDelay: 0.05, maxDelay: 0.2 },
        { TableName: 'oauth-token-broker' },
      );
      dynamo.destroy();
      await new Promise<void>((done) => old.close(() => done()));

      await expect(
        startTestBroker({ dataDir, persist: true, config: config(), kinds: testKinds }),
      ).rejects.toThrow(
        `lacks the index(es) due, by-provider. Delete ${join(dataDir, 'dynalite')}`,
      );
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
