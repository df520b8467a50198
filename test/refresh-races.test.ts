import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../shared/config.ts';
import { ProviderRejectedError } from '../shared/errors.ts';
import type { ResolvedProvider } from '../shared/providers/resolve.ts';
import type { TokenSet } from '../shared/providers/types.ts';
import { nextDueAt, refreshConnection, type RefreshDeps } from '../shared/refresh.ts';
import { consentTokens, testKinds } from './helpers/consent-kind.ts';
import { silentLogger, startContainer, type Container } from './helpers/containers.ts';
import { startTestBroker, type TestBroker } from './helpers/local.ts';

// The refresh protocol under real contention: several "containers" (independent brokers from
// shared/broker.ts, each with its own DynamoDB client, envelope and singleflight map) over the
// offline runtime's embedded store and sandbox providers, so only the lease and the conditional
// writes in the table can keep them from renewing twice or losing a renewal.
let local: TestBroker;
const containers: Container[] = [];

beforeAll(async () => {
  local = await startTestBroker({
    config: parseConfig(
      {
        providers: {
          quiqup: { catalog: 'quiqup', environment: 'sandbox' },
          // Never used before its first-use race: its connection does not exist yet.
          'quiqup-first': { catalog: 'quiqup', environment: 'sandbox' },
          quidkey: { catalog: 'quidkey', environment: 'sandbox', refreshLeadSeconds: 60 },
          // A user-consent provider (renews through the Quidkey sandbox): nothing can mint for it,
          // so a lost refresh token would lose the connection outright.
          consent: { kind: 'test-consent', environment: 'sandbox', via: 'quidkey' },
        },
      },
      { kinds: testKinds },
    ),
    kinds: testKinds,
  });
});
afterAll(async () => {
  for (const container of containers) container.close();
  await local.close();
});
afterEach(() => {
  local.sandboxes.quidkey.rotateRefreshTokens = false;
  local.sandboxes.quidkey.fault = undefined;
  local.sandboxes.quiqup.fault = undefined;
});

const calls = (kind: 'quiqup' | 'quidkey', endpoint: string) =>
  local.sandboxes[kind].callCount(endpoint);
const longRun = { remainingMs: () => 300_000 };

/**
 * Racing containers. A provider call that times out may still have been answered: a lost answer
 * (a retried mint counts twice; a rotated refresh token is lost, the provider's loss, not a
 * race's). On a busy machine the usual 400 ms test timeout is reached now and then, so racing
 * containers wait longer: these tests are about the races, not about timeouts.
 */
async function startContainers(count: number): Promise<Container[]> {
  const http = { timeoutMs: 10_000, retries: 2, minRetryDelayMs: 5 };
  const started = await Promise.all(
    Array.from({ length: count }, () => startContainer(local, { http })),
  );
  containers.push(...started);
  return started;
}

async function sandboxAccepts(kind: 'quiqup' | 'quidkey', authorization: string): Promise<boolean> {
  const path = kind === 'quiqup' ? '/sandbox/quiqup/me' : '/sandbox/quidkey/api/v1/me';
  const response = await fetch(`${local.url}${path}`, { headers: { authorization } });
  return response.status === 200;
}

/** A consent connection as a finished connect flow leaves it, in the due index. */
async function createConsentConnection(connectionId: string): Promise<void> {
  const provider = local.broker.providers.get('consent')!;
  const tokens = await consentTokens(local);
  await local.broker.store.create(
    'consent',
    connectionId,
    tokens,
    local.clock.t,
    nextDueAt(provider, tokens),
  );
}

/** Refresh-protocol dependencies over the runtime's store, with a quiet logger. */
function refreshDeps(): RefreshDeps {
  return {
    store: local.broker.store,
    events: local.broker.events,
    now: local.clock.now,
    logger: silentLogger,
    leaseMs: 30_000,
    // These holders are paused mid-call by the test (heldRenewal): their heartbeat with them.
    heartbeatMs: 600_000,
    waitMs: 20_000,
  };
}

/** A renewal that answers only when the test says so: a holder paused mid-call. */
function heldRenewal() {
  let release!: (tokens: TokenSet) => void;
  let called!: () => void;
  const answer = new Promise<TokenSet>((done) => (release = done));
  const started = new Promise<void>((done) => (called = done));
  const refresh = () => {
    called();
    return answer;
  };
  return { refresh, release, started };
}

/** The configured provider with its kind's refresh replaced (and no mint: nothing to fall back on). */
function withRefresh(providerId: string, refresh: () => Promise<TokenSet>): ResolvedProvider {
  const provider = local.broker.providers.get(providerId)!;
  const kind = provider.kind;
  if (kind.variant === 'request-signing') throw new Error(`${providerId} cannot refresh`);
  // A user-consent variant: it renews by refresh only, as the tests need.
  return {
    ...provider,
    kind: {
      ...kind,
      variant: 'user-consent',
      mint: undefined,
      refresh,
      startConsent: () => Promise.reject(new Error('not in this test')),
      checkCallback: () => ({ ok: false, message: 'not in this test' }),
      completeConsent: () => Promise.reject(new Error('not in this test')),
    },
  };
}

const fakeTokens = (name: string): TokenSet => ({
  accessToken: `access-${name}`,
  tokenType: 'Bearer',
  expiresAt: local.clock.t + 3_600_000,
  refreshToken: `refresh-${name}`,
});

describe('races: one provider call however many callers', () => {
  it.each([
    ['quiqup', 'token', 3600],
    ['quidkey', 'refresh', 900],
  ] as const)(
    '%s: the refresher and 50 token calls in 50 containers on an expired connection → exactly one %s call',
    async (providerId, endpoint, lifetimeSeconds) => {
      const [refresher, ...racers] = await startContainers(51);
      await local.invoke({ provider: providerId, forceRefresh: true });
      // Warm every container (connection to the store, key caches) so all race from the start.
      await Promise.all(
        racers.map((racer) => racer.broker.tokens.getToken({ provider: providerId })),
      );
      local.clock.advance(lifetimeSeconds + 1); // expired
      // A provider that takes 150 ms to answer, as real ones do: every caller arrives while the
      // first renewal is still in flight.
      local.sandboxes[providerId].fault = { type: 'delay', ms: 150 };
      const before = local.sandboxes[providerId].callCount();

      const running = refresher!.broker.refresher.run(longRun);
      const answers = await Promise.all(
        racers.map((racer) => racer.broker.tokens.getToken({ provider: providerId })),
      );
      const run = await running;

      local.sandboxes[providerId].fault = undefined;
      expect(local.sandboxes[providerId].callCount() - before).toBe(1);
      expect(calls(providerId, endpoint)).toBeGreaterThan(0);
      expect(new Set(answers.map((answer) => answer.accessToken)).size).toBe(1);
      const stored = (await local.broker.store.get(providerId, 'default'))!;
      expect(stored.tokens.accessToken).toBe(answers[0]!.accessToken);
      expect(stored.lease).toBeUndefined();
      expect(await sandboxAccepts(providerId, answers[0]!.authorization)).toBe(true);
      // The refresher renewed it, found it leased or renewed by a token call (skipped), or came
      // after the renewal had already taken it out of the due window.
      expect(run).toMatchObject({ failed: 0, needsReauth: 0 });
      expect(run.due).toBeLessThanOrEqual(1);
      expect(run.refreshed + run.skipped).toBe(run.due);
    },
  );

  it('first use: 24 callers in 4 containers on a client-credentials connection that does not exist yet → exactly one mint', async () => {
    const racers = await startContainers(4);
    // Warm every container's store connection and key caches (on another provider).
    await Promise.all(racers.map((racer) => racer.broker.tokens.getToken({ provider: 'quiqup' })));
    local.sandboxes.quiqup.fault = { type: 'delay', ms: 150 };
    const before = calls('quiqup', 'token');
    const answers = await Promise.all(
      Array.from({ length: 24 }, (_, i) =>
        racers[i % 4]!.broker.tokens.getToken({ provider: 'quiqup-first' }),
      ),
    );
    expect(calls('quiqup', 'token') - before).toBe(1);
    expect(new Set(answers.map((answer) => answer.accessToken)).size).toBe(1);
    const stored = (await local.broker.store.get('quiqup-first', 'default'))!;
    expect(stored).toMatchObject({ version: 1, status: 'active' });
    expect(stored.lease).toBeUndefined();
    expect(stored.tokens.accessToken).toBe(answers[0]!.accessToken);
    expect(await sandboxAccepts('quiqup', answers[0]!.authorization)).toBe(true);
  });

  it('1,000 concurrent renewals with rotating, single-use refresh tokens lose no connection', async () => {
    const sandbox = local.sandboxes.quidkey;
    sandbox.rotateRefreshTokens = true;
    const racers = await startContainers(4);
    await racers[0]!.broker.tokens.getToken({ provider: 'quidkey', forceRefresh: true });
    const consentIds = Array.from({ length: 7 }, (_, i) => `rotating-${i}`);
    for (const id of consentIds) await createConsentConnection(id);
    const targets: { provider: string; connectionId?: string }[] = [
      { provider: 'quidkey' },
      ...consentIds.map((connectionId) => ({ provider: 'consent', connectionId })),
    ];
    const versions = async () =>
      Promise.all(
        targets.map(
          async (t) => (await local.broker.store.get(t.provider, t.connectionId ?? 'default'))!,
        ),
      );
    const before = await versions();
    const mints = calls('quidkey', 'token');
    const refreshes = calls('quidkey', 'refresh');

    // 125 rounds over 8 connections at once: 1,000 renewal races, each between 4 containers.
    // Connections race side by side because one race at a time spends most of its time idle
    // (store round trips, waiters' jittered polling). The clock moves only between rounds: real
    // time does not jump 15 minutes inside one provider call.
    const started = Date.now();
    for (let round = 0; round < 125; round += 1) {
      if (round % 2 === 0) {
        // Every container was just refused the token (a 401): each forces a renewal.
        const answers = await Promise.all(
          racers.flatMap((racer) =>
            targets.map((target) =>
              racer.broker.tokens.getToken({ ...target, forceRefresh: true }),
            ),
          ),
        );
        expect(answers.every((answer) => answer.ok)).toBe(true);
      } else {
        // Time passes until every token is due: two refreshers and two token callers meet.
        local.clock.advance(sandbox.accessTokenSeconds - 30);
        const runs = racers.slice(0, 2).map((racer) => racer.broker.refresher.run(longRun));
        const answers = await Promise.all(
          racers.slice(2).flatMap((racer) => targets.map((t) => racer.broker.tokens.getToken(t))),
        );
        expect(answers.every((answer) => answer.ok)).toBe(true);
        for (const run of await Promise.all(runs)) {
          expect(run.failed + run.needsReauth).toBe(0);
        }
      }
    }
    const elapsedMs = Date.now() - started;

    const after = await versions();
    const renewals = after.reduce((sum, c, i) => sum + c.version - before[i]!.version, 0);
    expect(sandbox.reusedRefreshTokens).toBe(0); // no refresh token was ever presented twice
    expect(calls('quidkey', 'token')).toBe(mints); // and Quidkey never fell back to a fresh mint
    expect(calls('quidkey', 'refresh') - refreshes).toBe(renewals); // every renewal was kept
    expect(renewals).toBeGreaterThanOrEqual(1000); // at least one per connection per round
    for (const connection of after) {
      expect(connection.status).toBe('active');
      expect(connection.lease).toBeUndefined();
    }
    // Each connection still works: its refresh token is the live one, its access token accepted.
    for (const target of targets) {
      const answer = await local.invoke({ ...target, forceRefresh: true });
      expect(answer.ok).toBe(true);
      expect(await sandboxAccepts('quidkey', answer.authorization as string)).toBe(true);
    }
    expect(sandbox.reusedRefreshTokens).toBe(0);
    console.log(`1,000 renewal races in ${elapsedMs} ms (${renewals} renewals)`);
  }, 300_000); // ~40 s alone; minutes when the machine is shared
});

describe('races: leases and fencing (shared/refresh.ts driven directly)', () => {
  it('a holder paused past its lease cannot overwrite the newer write of the one that took over', async () => {
    await createConsentConnection('paused');
    local.clock.advance(3600); // expired: both holders will want to renew
    const slow = heldRenewal();
    const paused = refreshConnection(
      refreshDeps(),
      withRefresh('consent', slow.refresh),
      'paused',
      {
        minValidityMs: 60_000,
        force: false,
      },
    );
    await slow.started; // holder A has the lease and is inside the provider call
    const leased = (await local.broker.store.get('consent', 'paused'))!;
    expect(leased.lease).toBeDefined();

    local.clock.advance(31); // A's 30 s lease lapses while it is paused
    const takeover = await refreshConnection(
      refreshDeps(),
      withRefresh('consent', async () => fakeTokens('B')),
      'paused',
      { minValidityMs: 60_000, force: false },
    );
    expect(takeover.outcome).toBe('renewed');

    slow.release(fakeTokens('A')); // A wakes up with its (older) answer
    const late = await paused;
    expect(late.outcome).toBe('fresh'); // A defers to B's write…
    expect(late.connection.tokens.accessToken).toBe('access-B');
    const stored = (await local.broker.store.get('consent', 'paused'))!;
    expect(stored.tokens).toMatchObject({ accessToken: 'access-B', refreshToken: 'refresh-B' });
    expect(stored.version).toBe(leased.version + 1); // …and wrote nothing
    expect(stored.status).toBe('active');
  });

  it("a paused holder's renewal is still kept when nobody has written since (the provider may have rotated the refresh token)", async () => {
    await createConsentConnection('kept');
    local.clock.advance(3600);
    const first = heldRenewal();
    const second = heldRenewal();
    const a = refreshConnection(refreshDeps(), withRefresh('consent', first.refresh), 'kept', {
      minValidityMs: 60_000,
      force: false,
    });
    await first.started;
    local.clock.advance(31);
    const b = refreshConnection(refreshDeps(), withRefresh('consent', second.refresh), 'kept', {
      minValidityMs: 60_000,
      force: false,
    });
    await second.started; // B took the lapsed lease over and is calling the provider too

    first.release(fakeTokens('A')); // A answers first: B holds the lease, but nobody has written
    expect((await a).outcome).toBe('renewed');
    second.release(fakeTokens('B'));
    const resultB = await b;
    expect(resultB.outcome).toBe('fresh'); // B finds A's write and keeps it
    expect(resultB.connection.tokens.accessToken).toBe('access-A');
    const stored = (await local.broker.store.get('consent', 'kept'))!;
    expect(stored.tokens.refreshToken).toBe('refresh-A');
    expect(stored.lease).toBeUndefined();
  });

  it('a paused holder whose rotation made the takeover fail keeps its tokens over that failure record', async () => {
    await createConsentConnection('rotated');
    local.clock.advance(3600);
    const slow = heldRenewal();
    const a = refreshConnection(refreshDeps(), withRefresh('consent', slow.refresh), 'rotated', {
      minValidityMs: 60_000,
      force: false,
    });
    await slow.started; // A has used the refresh token at the provider (which rotates it)
    local.clock.advance(31); // A's lease lapses
    // B takes over with the same, now spent, refresh token: the provider refuses the grant.
    const refused = async (): Promise<TokenSet> => {
      throw new ProviderRejectedError('refresh token already used', {
        providerCode: 'invalid_grant',
        grantRefused: true,
      });
    };
    await expect(
      refreshConnection(refreshDeps(), withRefresh('consent', refused), 'rotated', {
        minValidityMs: 60_000,
        force: false,
      }),
    ).rejects.toMatchObject({ code: 'needs_reauth' });
    expect((await local.broker.store.get('consent', 'rotated'))!.status).toBe('needs_reauth');

    slow.release(fakeTokens('A')); // A's answer carries the only live refresh token
    expect((await a).outcome).toBe('renewed');
    const stored = (await local.broker.store.get('consent', 'rotated'))!;
    expect(stored).toMatchObject({ status: 'active', refreshFailures: 0 });
    expect(stored.tokens).toMatchObject({ accessToken: 'access-A', refreshToken: 'refresh-A' });
    expect(stored.dueAt).toBeDefined(); // back in the due index
  });

  it("a dead holder's lease is taken over once it lapses; the waiting caller renews", async () => {
    await createConsentConnection('orphaned');
    local.clock.advance(3600);
    const read = (await local.broker.store.get('consent', 'orphaned'))!;
    // A container took the lease and died: nobody will release it.
    await local.broker.store.acquireLease(read, 'dead-container', local.clock.t, 30_000);
    const refreshes = calls('quidkey', 'refresh');
    const waiting = local.invoke({ provider: 'consent', connectionId: 'orphaned' });
    await new Promise((done) => setTimeout(done, 200));
    expect(calls('quidkey', 'refresh')).toBe(refreshes); // still waiting on the live lease
    local.clock.advance(31);
    const answer = await waiting;
    expect(answer.ok).toBe(true);
    expect(calls('quidkey', 'refresh')).toBe(refreshes + 1);
    const stored = (await local.broker.store.get('consent', 'orphaned'))!;
    expect(stored.version).toBe(read.version + 1);
    expect(stored.lease).toBeUndefined();
    expect(await sandboxAccepts('quidkey', answer.authorization as string)).toBe(true);
  });

  it('renewed tokens are written even when the store fails the first writes', async () => {
    // The provider may already have rotated the refresh token: dropping its answer would lose
    // the connection, so the write is retried.
    await createConsentConnection('flaky-store');
    local.clock.advance(3600);
    let refused = 0;
    const container = await startContainer(local);
    containers.push(container);
    container.dynamo.middlewareStack.add(
      (next) => async (args) => {
        const input = args.input as { UpdateExpression?: string };
        if (refused < 2 && input.UpdateExpression?.includes('tokens =')) {
          refused += 1;
          throw Object.assign(new Error('Throughput exceeds the current capacity'), {
            name: 'ThrottlingException',
          });
        }
        return next(args);
      },
      { step: 'initialize', name: 'throttleTokenWrites' },
    );
    local.sandboxes.quidkey.rotateRefreshTokens = true;
    const refreshes = calls('quidkey', 'refresh');
    const answer = await container.broker.tokens.getToken({
      provider: 'consent',
      connectionId: 'flaky-store',
    });
    expect(refused).toBe(2);
    expect(calls('quidkey', 'refresh')).toBe(refreshes + 1);
    const stored = (await local.broker.store.get('consent', 'flaky-store'))!;
    expect(stored.tokens.accessToken).toBe(answer.accessToken);
    // The stored refresh token is the rotated one: the next renewal works.
    const next = await local.invoke({
      provider: 'consent',
      connectionId: 'flaky-store',
      forceRefresh: true,
    });
    expect(next.ok).toBe(true);
    expect(local.sandboxes.quidkey.reusedRefreshTokens).toBe(0);
  });
});
