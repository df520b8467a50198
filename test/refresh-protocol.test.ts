import { describe, expect, it } from 'vitest';
import {
  NeedsReauthError,
  ProviderRejectedError,
  ProviderUnavailableError,
  VersionConflictError,
} from '../shared/errors.ts';
import type { LifecycleEvent } from '../shared/events.ts';
import type { BrokerLogger } from '../shared/logger.ts';
import type { AnyProviderProtocol } from '../shared/providers/protocols.ts';
import type { ResolvedProvider } from '../shared/providers/resolve.ts';
import type { TokenSet } from '../shared/providers/types.ts';
import {
  ProviderCallTimes,
  refreshConnection,
  RenewalNotStarted,
  waitPollMs,
  type RefreshDeps,
  type RefreshOptions,
} from '../shared/refresh.ts';
import type { Connection, ConnectionStore } from '../shared/store/connection-store.ts';
import { MemoryConnectionStore } from '../shared/store/memory-connection-store.ts';

// The refresh protocol (shared/refresh.ts) branch by branch, and the failure policy of
// docs/architecture.md row by row, on the in-memory store (which keeps DynamoDB's conditional
// writes: test/connection-store-contract.test.ts). Providers are plain functions here: what a
// provider answers is the input of each case. The race tests over the real store and sandboxes
// are test/refresh-races.test.ts.

const T0 = Date.UTC(2026, 10, 23, 12, 0, 0);
const HOUR = 3_600_000;
const ID = 'conn';

const quiet: BrokerLogger = { debug: () => {}, info: () => {}, warn: () => {}, error: () => {} };

interface Calls {
  refresh: number;
  mint: number;
}

type Answer = () => Promise<TokenSet>;

/** A provider kind made of the given answers, counting its calls. */
function world(
  kind: {
    grant: 'client_credentials' | 'user_consent';
    refresh?: Answer;
    mint?: Answer;
    reauthLeadMs?: number;
  },
  depsOverrides: Partial<RefreshDeps> = {},
) {
  const clock = { t: T0 };
  const calls: Calls = { refresh: 0, mint: 0 };
  const events: LifecycleEvent[] = [];
  const warnings: string[] = [];
  const store = new MemoryConnectionStore();
  const provider: ResolvedProvider = {
    id: 'p',
    leadMs: 60_000,
    reauthLeadMs: kind.reauthLeadMs ?? 0,
    context: {} as never,
    kind: {
      kind: 'test',
      variant: kind.grant === 'client_credentials' ? 'client-credentials' : 'user-consent',
      secretFields: [],
      startConsent: () => Promise.reject(new Error('no consent page here')),
      checkCallback: () => ({ ok: false, message: 'no consent page here' }),
      completeConsent: () => Promise.reject(new Error('no consent page here')),
      ...(kind.refresh
        ? {
            refresh: () => {
              calls.refresh += 1;
              return kind.refresh!();
            },
          }
        : {}),
      ...(kind.mint
        ? {
            mint: () => {
              calls.mint += 1;
              return kind.mint!();
            },
          }
        : {}),
    } as AnyProviderProtocol,
  };
  const deps: RefreshDeps = {
    store,
    events: { publish: async (event) => void events.push(event) },
    now: () => clock.t,
    logger: { ...quiet, warn: (message: string) => void warnings.push(message) },
    leaseMs: 8_000,
    heartbeatMs: 2_000,
    waitMs: 20_000,
    callTimes: new ProviderCallTimes(2), // waiters poll every few ms
    ...depsOverrides,
  };
  const refresh = (options: Partial<RefreshOptions> = {}, over: Partial<RefreshDeps> = {}) =>
    refreshConnection({ ...deps, ...over }, provider, ID, {
      minValidityMs: 60_000,
      force: false,
      ...options,
    });
  const stored = async () => (await store.get('p', ID))!;
  const seed = (tokens: TokenSet, dueAt?: number) => store.create('p', ID, tokens, clock.t, dueAt);
  return { clock, calls, events, warnings, store, provider, deps, refresh, stored, seed };
}

const tokens = (name: string, expiresIn = HOUR, extra: Partial<TokenSet> = {}): TokenSet => ({
  accessToken: `access-${name}`,
  tokenType: 'Bearer',
  expiresAt: T0 + expiresIn,
  refreshToken: `refresh-${name}`,
  ...extra,
});
const answers =
  (name: string, extra: Partial<TokenSet> = {}) =>
  async () =>
    tokens(name, HOUR, extra);
const refused = (grantRefused?: boolean) => async (): Promise<TokenSet> => {
  throw new ProviderRejectedError('refused', {
    status: 401,
    ...(grantRefused ? { grantRefused } : {}),
  });
};
const down = async (): Promise<TokenSet> => {
  throw new ProviderUnavailableError('down', { status: 503 });
};
/** A provider call that answers only when the test says so. */
function held() {
  let release!: (tokens: TokenSet) => void;
  let fail!: (error: Error) => void;
  let started!: () => void;
  const answer = new Promise<TokenSet>((resolve, reject) => {
    release = resolve;
    fail = reject;
  });
  const called = new Promise<void>((resolve) => (started = resolve));
  return {
    call: () => {
      started();
      return answer;
    },
    called,
    release,
    fail,
  };
}
const tick = (ms = 5) => new Promise((done) => setTimeout(done, ms));
/** Waits for something the protocol does on its own timers (a heartbeat), however busy the machine. */
async function until(condition: () => boolean): Promise<void> {
  for (let i = 0; i < 2_000 && !condition(); i += 1) await tick(1);
  expect(condition()).toBe(true);
}
/** The store, with each heartbeat counted. */
function countingBeats(store: ConnectionStore) {
  const counting = Object.create(store) as ConnectionStore & { beats: number };
  counting.beats = 0;
  counting.extendLease = (...args) => {
    counting.beats += 1;
    return store.extendLease(...args);
  };
  return counting;
}

describe('refresh protocol: what it decides from what it reads', () => {
  const consent = { grant: 'user_consent' as const, refresh: answers('new') };
  it.each<{
    name: string;
    stored?: TokenSet | 'needs_reauth';
    kind: Parameters<typeof world>[0];
    options?: Partial<RefreshOptions>;
    outcome: string;
    calls: Calls;
  }>([
    {
      name: 'no connection, consent kind → not_found',
      kind: consent,
      outcome: 'not_found',
      calls: { refresh: 0, mint: 0 },
    },
    {
      name: 'no connection, client credentials, a waiting caller → claimed and minted',
      kind: { grant: 'client_credentials', mint: answers('minted') },
      outcome: 'created',
      calls: { refresh: 0, mint: 1 },
    },
    {
      name: 'no connection, the refresher → not_found (it does not bring back a deleted one)',
      kind: { grant: 'client_credentials', mint: answers('minted') },
      options: { waitForLease: false },
      outcome: 'not_found',
      calls: { refresh: 0, mint: 0 },
    },
    {
      name: 'needs_reauth → refused, no call',
      stored: 'needs_reauth',
      kind: consent,
      outcome: 'needs_reauth',
      calls: { refresh: 0, mint: 0 },
    },
    {
      name: 'valid → fresh',
      stored: tokens('old'),
      kind: consent,
      outcome: 'fresh',
      calls: { refresh: 0, mint: 0 },
    },
    {
      name: 'does not expire → fresh',
      stored: { accessToken: 'a', tokenType: 'Bearer' },
      kind: consent,
      outcome: 'fresh',
      calls: { refresh: 0, mint: 0 },
    },
    {
      name: 'expired → renewed',
      stored: tokens('old', -1),
      kind: consent,
      outcome: 'renewed',
      calls: { refresh: 1, mint: 0 },
    },
    {
      name: 'within minValidity → renewed',
      stored: tokens('old', 30_000),
      kind: consent,
      outcome: 'renewed',
      calls: { refresh: 1, mint: 0 },
    },
    {
      name: 'forced, at the version seen → renewed',
      stored: tokens('old'),
      kind: consent,
      options: { force: true, seenVersion: 1 },
      outcome: 'renewed',
      calls: { refresh: 1, mint: 0 },
    },
    {
      name: 'forced, but renewed since the version seen → fresh',
      stored: tokens('old'),
      kind: consent,
      options: { force: true, seenVersion: 0 },
      outcome: 'fresh',
      calls: { refresh: 0, mint: 0 },
    },
    {
      name: 'refresh token expired, kind can mint → minted, no refresh call',
      stored: tokens('old', -1, { refreshTokenExpiresAt: T0 - 1 }),
      kind: { grant: 'client_credentials', refresh: answers('r'), mint: answers('m') },
      outcome: 'renewed',
      calls: { refresh: 0, mint: 1 },
    },
    {
      name: 'refresh refused, kind can mint → minted',
      stored: tokens('old', -1),
      kind: { grant: 'client_credentials', refresh: refused(true), mint: answers('m') },
      outcome: 'renewed',
      calls: { refresh: 1, mint: 1 },
    },
    {
      name: 'no refresh token and nothing can mint → needs_reauth',
      stored: { accessToken: 'a', tokenType: 'Bearer', expiresAt: T0 - 1 },
      kind: consent,
      outcome: 'needs_reauth',
      calls: { refresh: 0, mint: 0 },
    },
  ])('$name', async (row) => {
    const w = world(row.kind);
    if (row.stored === 'needs_reauth') {
      const created = await w.seed(tokens('old', -1));
      await w.store.acquireLease(created, 'h', T0, 1000);
      await w.store.recordFailure(
        { ...created, lease: { holder: 'h', expiresAt: T0 + 1000 } },
        'h',
        { error: { code: 'provider_rejected', message: 'x' }, needsReauth: true },
        T0,
      );
    } else if (row.stored) await w.seed(row.stored);
    const outcome = await w.refresh(row.options).then(
      (result) => result.outcome,
      (error: { code?: string }) => error.code ?? String(error),
    );
    expect(outcome).toBe(row.outcome);
    expect(w.calls).toEqual(row.calls);
    const after = await w.store.get('p', ID);
    if (after) expect(after.lease).toBeUndefined(); // nothing left leased
    if (outcome === 'renewed' || outcome === 'created') {
      expect(after!.tokens.accessToken).toMatch(/^access-(new|minted|m)$/);
      expect(after!.dueAt).toBe(after!.tokens.expiresAt! - w.provider.leadMs);
    }
  });

  it('a refresh answer without a refresh token keeps the old one', async () => {
    const w = world({
      grant: 'user_consent',
      refresh: async () => ({
        accessToken: 'access-new',
        tokenType: 'Bearer',
        expiresAt: T0 + HOUR,
      }),
    });
    await w.seed(tokens('old', -1, { refreshTokenExpiresAt: T0 + 10 * HOUR }));
    const { connection } = await w.refresh();
    expect(connection.tokens).toMatchObject({
      accessToken: 'access-new',
      refreshToken: 'refresh-old',
      refreshTokenExpiresAt: T0 + 10 * HOUR,
    });
  });

  it('a stale copy (someone wrote since) costs one re-read, not a second renewal', async () => {
    const w = world({ grant: 'user_consent', refresh: answers('new') });
    const stale = await w.seed(tokens('old', -1));
    await w.store.saveTokens(stale, tokens('other', -1), T0); // version 2, still expired
    const result = await w.refresh({ initial: stale });
    expect(result.outcome).toBe('renewed');
    expect(result.connection.version).toBe(3);
    expect(w.calls.refresh).toBe(1);
  });
});

describe('refresh protocol: leases', () => {
  it('a live lease elsewhere: the refresher moves on, a token caller waits for the holder and makes no call', async () => {
    const w = world({ grant: 'user_consent', refresh: answers('mine') });
    const read = await w.seed(tokens('old', -1));
    const leased = await w.store.acquireLease(read, 'other', T0, 8_000);
    expect((await w.refresh({ waitForLease: false })).outcome).toBe('leased_elsewhere');

    const waiting = w.refresh();
    await tick(20);
    await w.store.saveTokens(leased, tokens('theirs'), T0, { holder: 'other' });
    const result = await waiting;
    expect(result).toMatchObject({
      outcome: 'fresh',
      connection: { tokens: { accessToken: 'access-theirs' } },
    });
    expect(w.calls.refresh).toBe(0);
  });

  it('a waiter gives up with provider_unavailable after waitMs', async () => {
    const w = world({ grant: 'user_consent', refresh: answers('mine') });
    const read = await w.seed(tokens('old', -1));
    await w.store.acquireLease(read, 'other', T0, 60_000);
    const waiting = w.refresh();
    await tick(10);
    w.clock.t += 20_001;
    await expect(waiting).rejects.toBeInstanceOf(ProviderUnavailableError);
    expect(w.calls.refresh).toBe(0);
  });

  it('a lapsed lease (its holder died) is taken over at once', async () => {
    const w = world({ grant: 'user_consent', refresh: answers('new') });
    const read = await w.seed(tokens('old', -1));
    await w.store.acquireLease(read, 'dead', T0 - 8_001, 8_000);
    expect((await w.refresh()).outcome).toBe('renewed');
  });

  it('a waiter takes over the moment a dead holder’s lease lapses (its poll never sleeps past it)', () => {
    expect(waitPollMs(100, 10_000, 3, () => 1)).toBe(4);
    expect(waitPollMs(100, 0, 3_000, () => 0.5)).toBe(25); // first half: a quarter of the call
    expect(waitPollMs(120, 60, 3_000, () => 0.5)).toBe(10); // then a twelfth, as it lands
    expect(waitPollMs(100, 60_000, 3_000, () => 0.5)).toBe(1_000); // slow or dead holder: 1 s
    expect(waitPollMs(1, 0, -1, () => 0.5)).toBe(5); // never below 5 ms before it can land
    expect(waitPollMs(1, 1, -1, () => 0.5)).toBe(4); // nor 4 ms after
  });

  it.each([1, 2, 50, 100, 1_000, 5_000, 60_000])(
    'a waiter reads at most 60 times over a whole 20 s wait (expected call %d ms, every poll at its shortest)',
    (expectedMs) => {
      let waited = 0;
      let reads = 0;
      while (waited < 20_000) {
        waited += waitPollMs(expectedMs, waited, -1, () => 0);
        reads += 1;
      }
      expect(reads).toBeLessThanOrEqual(60);
    },
  );

  it('the heartbeat keeps a live holder’s lease through a call longer than the lease', async () => {
    const call = held();
    const w = world({ grant: 'user_consent', refresh: call.call }, { heartbeatMs: 5 });
    await w.seed(tokens('old', -1));
    const store = countingBeats(w.store);
    const holder = w.refresh({}, { store });
    await call.called;
    for (let i = 0; i < 4; i += 1) {
      w.clock.t += 5_000; // 20 s pass in all: the 8 s lease would have lapsed twice over
      const beats = store.beats;
      await until(() => store.beats > beats + 1); // a beat after this move of the clock
      expect((await w.refresh({ waitForLease: false })).outcome).toBe('leased_elsewhere');
    }
    call.release(tokens('new', 10 * HOUR));
    expect((await holder).outcome).toBe('renewed');
    expect(w.calls.refresh).toBe(1);
    expect((await w.stored()).lease).toBeUndefined();
  });

  it('a paused holder (no heartbeat) is taken over; its late answer never overwrites the newer write', async () => {
    const call = held();
    const w = world({ grant: 'user_consent', refresh: call.call }, { heartbeatMs: 60_000 });
    await w.seed(tokens('old', -1));
    const paused = w.refresh();
    await call.called;
    w.clock.t += 8_001; // its lease lapses
    // Another container takes over, with its own provider client.
    const other = world({ grant: 'user_consent', refresh: answers('B') });
    const b = await refreshConnection(
      { ...other.deps, store: w.store, now: w.deps.now },
      other.provider,
      ID,
      {
        minValidityMs: 60_000,
        force: false,
      },
    );
    expect(b.outcome).toBe('renewed');
    call.release(tokens('A'));
    const late = await paused;
    expect(late).toMatchObject({
      outcome: 'fresh',
      connection: { tokens: { accessToken: 'access-B' } },
    });
    expect((await w.stored()).tokens.accessToken).toBe('access-B');
  });

  it('a holder whose heartbeat writes fail keeps renewing; once taken over, its answer defers to the newer write', async () => {
    const call = held();
    const w = world({ grant: 'user_consent', refresh: call.call }, { heartbeatMs: 5 });
    let failedBeats = 0;
    const failing: ConnectionStore = Object.create(w.store) as ConnectionStore;
    failing.extendLease = async () => {
      failedBeats += 1;
      throw Object.assign(new Error('throttled'), { name: 'ThrottlingException' });
    };
    await w.seed(tokens('old', -1));
    const holder = w.refresh({}, { store: failing });
    await call.called;
    await until(() => failedBeats > 2); // it keeps trying, beat after beat
    expect(w.warnings).toContain('refresh lease heartbeat failed; trying again at the next beat');
    w.clock.t += 8_001; // every beat failed for a whole lease: it lapses
    const other = world({ grant: 'user_consent', refresh: answers('B') });
    await refreshConnection(
      { ...other.deps, store: w.store, now: w.deps.now },
      other.provider,
      ID,
      {
        minValidityMs: 60_000,
        force: false,
      },
    );
    call.release(tokens('A'));
    expect((await holder).connection.tokens.accessToken).toBe('access-B');
    expect((await w.stored()).tokens.accessToken).toBe('access-B');
  });

  it('a holder that lost its lease while waiting for a call slot makes no call and writes nothing', async () => {
    const w = world({ grant: 'user_consent', refresh: answers('A') }, { heartbeatMs: 5 });
    const read = await w.seed(tokens('old', -1));
    const store = countingBeats(w.store);
    let openSlot!: () => void;
    const slotOpen = new Promise<void>((done) => (openSlot = done));
    const renewal = w.refresh(
      {
        callSlot: async (call) => {
          await slotOpen;
          return call();
        },
      },
      { store },
    );
    await until(() => store.beats > 0); // leased, waiting for its slot
    // Someone wrote meanwhile (a reconnect): the next beat finds the lease gone.
    await w.store.saveTokens(read, tokens('reconnected'), T0);
    await until(() => w.warnings.includes('refresh lease lost while renewing'));
    openSlot();
    expect((await renewal).outcome).toBe('not_started');
    expect(w.calls.refresh).toBe(0);
    expect((await w.stored()).tokens.accessToken).toBe('access-reconnected');
    expect(w.warnings).toContain('refresh lease lost while renewing');
  });

  it('a call slot that declines (out of time, provider stopped) gives the lease back untouched', async () => {
    const w = world({ grant: 'user_consent', refresh: answers('A') });
    const read = await w.seed(tokens('old', -1), T0);
    const result = await w.refresh({
      callSlot: async () => {
        throw new RenewalNotStarted();
      },
    });
    expect(result.outcome).toBe('not_started');
    expect(w.calls.refresh).toBe(0);
    const after = await w.stored();
    expect(after).toMatchObject({ version: read.version, dueAt: T0, refreshFailures: 0 });
    expect(after.lease).toBeUndefined();
  });
});

describe('refresh protocol: writing the answer', () => {
  it('our lease lapsed but nobody wrote since: our tokens are written anyway (the provider may have rotated)', async () => {
    const call = held();
    const w = world({ grant: 'user_consent', refresh: call.call }, { heartbeatMs: 60_000 });
    const read = await w.seed(tokens('old', -1));
    const renewal = w.refresh();
    await call.called;
    w.clock.t += 8_001;
    await w.store.acquireLease(read, 'taker', w.clock.t, 8_000); // taken over, nothing written yet
    call.release(tokens('A'));
    expect((await renewal).outcome).toBe('renewed');
    expect((await w.stored()).tokens.refreshToken).toBe('refresh-A');
  });

  it('…and over a failure record written since (the taker was refused our spent refresh token)', async () => {
    const call = held();
    const w = world({ grant: 'user_consent', refresh: call.call }, { heartbeatMs: 60_000 });
    const read = await w.seed(tokens('old', -1));
    const renewal = w.refresh();
    await call.called;
    w.clock.t += 8_001;
    const taken = await w.store.acquireLease(read, 'taker', w.clock.t, 8_000);
    await w.store.recordFailure(
      taken,
      'taker',
      { error: { code: 'provider_rejected', message: 'x' }, needsReauth: true },
      w.clock.t,
    );
    call.release(tokens('A'));
    expect((await renewal).outcome).toBe('renewed');
    expect(await w.stored()).toMatchObject({
      status: 'active',
      refreshFailures: 0,
      tokens: { refreshToken: 'refresh-A' },
    });
  });

  it('a store that fails the token write is retried; one that keeps failing is thrown', async () => {
    for (const [failures, expected] of [
      [2, 'renewed'],
      [4, 'ThrottlingException'],
    ] as const) {
      const w = world({ grant: 'user_consent', refresh: answers('new') });
      await w.seed(tokens('old', -1));
      let refused = 0;
      const flaky: ConnectionStore = Object.create(w.store) as ConnectionStore;
      flaky.saveTokens = async (...args) => {
        if (refused < failures) {
          refused += 1;
          throw Object.assign(new Error('throttled'), { name: 'ThrottlingException' });
        }
        return w.store.saveTokens(...args);
      };
      const outcome = await w.refresh({}, { store: flaky, sleep: async () => {} }).then(
        (r) => r.outcome,
        (e: Error) => e.name,
      );
      expect(outcome).toBe(expected);
    }
  });

  it('a failure whose record finds a newer write (superseded) returns that write', async () => {
    const call = held();
    const w = world({ grant: 'user_consent', refresh: call.call }, { heartbeatMs: 60_000 });
    const read = await w.seed(tokens('old', -1));
    const renewal = w.refresh();
    await call.called;
    await w.store.saveTokens(read, tokens('reconnected'), T0); // a reconnect wrote meanwhile
    call.fail(new ProviderUnavailableError('down'));
    expect((await renewal).connection.tokens.accessToken).toBe('access-reconnected');
    expect((await w.stored()).lastError).toBeUndefined();
  });
});

describe('refresh protocol: first use (client credentials)', () => {
  it('any number of callers in any number of containers → one claim, one mint', async () => {
    const call = held();
    const w = world({ grant: 'client_credentials', mint: call.call });
    // Four "containers": each its own deps (and call times), one store.
    const callers = Array.from({ length: 24 }, (_, i) =>
      w.refresh({}, { callTimes: new ProviderCallTimes(2 + (i % 4)) }),
    );
    await call.called;
    await tick(20);
    expect(await w.store.get('p', ID)).toBeUndefined(); // the claim is no connection yet
    call.release(tokens('minted'));
    const results = await Promise.all(callers);
    expect(w.calls.mint).toBe(1);
    expect(results.filter((r) => r.outcome === 'created')).toHaveLength(1);
    expect(new Set(results.map((r) => r.connection.tokens.accessToken))).toEqual(
      new Set(['access-minted']),
    );
    expect(w.events.map((e) => e.type)).toEqual(['Connection Created']);
    expect(await w.stored()).toMatchObject({ version: 1, status: 'active' });
  });

  it('a failed first mint gives the claim up: the next caller claims and mints', async () => {
    let fail = true;
    const w = world({
      grant: 'client_credentials',
      mint: async () => {
        if (fail) return down();
        return tokens('second');
      },
    });
    await expect(w.refresh()).rejects.toBeInstanceOf(ProviderUnavailableError);
    fail = false;
    expect((await w.refresh()).outcome).toBe('created');
    expect(w.calls.mint).toBe(2);
  });

  it('a claimer that died: its claim lapses and is taken over', async () => {
    const w = world({ grant: 'client_credentials', mint: answers('taker') });
    await w.store.claim('p', ID, 'dead', T0 - 8_001, 8_000);
    expect((await w.refresh()).outcome).toBe('created');
  });

  it('a create over a live claim is refused (the claimer writes the first tokens)', async () => {
    const w = world({ grant: 'client_credentials', mint: answers('x') });
    await w.store.claim('p', ID, 'claimer', T0, 8_000);
    await expect(w.seed(tokens('x'))).rejects.toBeInstanceOf(VersionConflictError);
  });
});

describe('failure policy (docs/architecture.md, "Failure policy"), row by row', () => {
  it.each<{
    row: string;
    grant: 'client_credentials' | 'user_consent';
    provider: Answer;
    reauthLeadMs?: number;
    status: Connection['status'];
    due: 'backoff' | 'removed';
    event: LifecycleEvent['type'];
    calls: number;
  }>([
    {
      row: 'transient (timeout, 5xx, 429, garbage), consent kind',
      grant: 'user_consent',
      provider: down,
      status: 'active',
      due: 'backoff',
      event: 'Connection Refresh Failed',
      calls: 1,
    },
    {
      row: 'transient, client-credentials kind',
      grant: 'client_credentials',
      provider: down,
      status: 'active',
      due: 'backoff',
      event: 'Connection Refresh Failed',
      calls: 1,
    },
    {
      row: 'refused, client-credentials kind: the mint itself',
      grant: 'client_credentials',
      provider: refused(true),
      status: 'active',
      due: 'backoff',
      event: 'Connection Refresh Failed',
      calls: 1,
    },
    {
      row: 'refused, consent kind, not the grant (our credentials, a 403, a wrong URL)',
      grant: 'user_consent',
      provider: refused(false),
      status: 'active',
      due: 'backoff',
      event: 'Connection Refresh Failed',
      calls: 1,
    },
    {
      row: 'refused, consent kind, the grant itself (grantRefused)',
      grant: 'user_consent',
      provider: refused(true),
      status: 'needs_reauth',
      due: 'removed',
      event: 'Connection Needs Reauth',
      calls: 1,
    },
    {
      row: 'consent ending: the refresh token ends within reauthLeadSeconds',
      grant: 'user_consent',
      provider: answers('never'),
      reauthLeadMs: 7 * 24 * HOUR,
      status: 'needs_reauth',
      due: 'removed',
      event: 'Connection Needs Reauth',
      calls: 0,
    },
  ])('$row → $status, due index $due, $event', async (row) => {
    const kind =
      row.grant === 'user_consent'
        ? {
            grant: row.grant,
            refresh: row.provider,
            ...(row.reauthLeadMs ? { reauthLeadMs: row.reauthLeadMs } : {}),
          }
        : { grant: row.grant, mint: row.provider };
    const w = world(kind);
    const stored = tokens('old', 30_000, { refreshTokenExpiresAt: T0 + 3 * 24 * HOUR });
    if (row.grant === 'client_credentials') delete stored.refreshToken; // renewal is a mint
    const before = await w.seed(stored, T0);
    const error = await w.refresh().then(
      () => undefined,
      (e: Error) => e,
    );
    expect(error).toBeInstanceOf(row.status === 'needs_reauth' ? NeedsReauthError : Error);
    const after = await w.stored();
    expect(after.status).toBe(row.status);
    expect(after.tokens).toEqual(before.tokens); // a failure never touches the tokens
    expect(after.lastError).toMatchObject({ at: T0 });
    expect(after.refreshFailures).toBe(1);
    expect(after.lease).toBeUndefined();
    if (row.due === 'removed') expect(after.dueAt).toBeUndefined();
    else {
      // First failure: 1 min, jittered in its upper half.
      expect(after.dueAt).toBeGreaterThanOrEqual(T0 + 30_000);
      expect(after.dueAt).toBeLessThanOrEqual(T0 + 60_000);
    }
    expect(w.events.map((e) => e.type)).toEqual([row.event]);
    expect(w.calls.refresh + w.calls.mint).toBe(row.calls);
    if (row.status === 'needs_reauth') {
      // The token function answers needs_reauth from then on.
      await expect(w.refresh()).rejects.toMatchObject({ code: 'needs_reauth' });
    }
  });
});
