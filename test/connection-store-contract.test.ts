import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { VersionConflictError } from '../shared/errors.ts';
import type { TokenSet } from '../shared/providers/types.ts';
import type { ConnectionStore } from '../shared/store/connection-store.ts';
import { MemoryConnectionStore } from '../shared/store/memory-connection-store.ts';
import { allDueShards, connectionPk, dueShardFor } from '../shared/store/table.ts';
import { startTestBroker, type TestBroker } from './helpers/local.ts';

// One suite, both adapters of the store port: DynamoDB (against dynalite, the embedded store of
// the offline runtime) and memory (what the protocol's unit tests run on). Every conditional
// write is tried where it must pass and where it must be refused, so the in-memory store cannot
// drift from DynamoDB's semantics.
let local: TestBroker;
beforeAll(async () => {
  local = await startTestBroker();
});
afterAll(() => local.close());

const T = 1_000_000;
const tokens = (name: string, extra: Partial<TokenSet> = {}): TokenSet => ({
  accessToken: `access-${name}`,
  tokenType: 'Bearer',
  expiresAt: T + 3_600_000,
  refreshToken: `refresh-${name}`,
  ...extra,
});
const conflict = (write: Promise<unknown>) =>
  expect(write).rejects.toBeInstanceOf(VersionConflictError);

describe.each<[string, () => ConnectionStore]>([
  ['DynamoDB (dynalite)', () => local.broker.store],
  ['memory', () => new MemoryConnectionStore()],
])('connection store contract: %s', (adapter, makeStore) => {
  let store: ConnectionStore;
  // Each adapter's cases get their own provider id: the DynamoDB cases share one table.
  const p = adapter.startsWith('memory') ? 'mem' : 'ddb';
  beforeAll(() => {
    store = makeStore();
  });

  it('create, get, and a second create refused', async () => {
    expect(await store.get(p, 'a')).toBeUndefined();
    const created = await store.create(p, 'a', tokens('1'), T, T + 10);
    expect(created).toMatchObject({
      version: 1,
      status: 'active',
      createdAt: T,
      dueAt: T + 10,
      refreshFailures: 0,
    });
    expect(await store.get(p, 'a')).toEqual(created);
    await conflict(store.create(p, 'a', tokens('2'), T));
  });

  it('the lease: one holder at a time, taken over once lapsed, extended only by its holder, released', async () => {
    const read = await store.create(p, 'lease', tokens('1'), T);
    const a = await store.acquireLease(read, 'a', T, 1_000);
    expect(a.lease).toEqual({ holder: 'a', expiresAt: T + 1_000 });
    await conflict(store.acquireLease(read, 'b', T + 1_000, 1_000)); // live at its last ms
    await store.extendLease(read, 'a', T + 900, 1_000); // the heartbeat
    await conflict(store.acquireLease(read, 'b', T + 1_500, 1_000));
    expect((await store.get(p, 'lease'))!.lease).toEqual({ holder: 'a', expiresAt: T + 1_900 });
    await conflict(store.extendLease(read, 'b', T + 1_000, 1_000)); // not b's to extend
    const b = await store.acquireLease(read, 'b', T + 1_901, 1_000); // a lapsed: taken over
    expect(b.lease).toEqual({ holder: 'b', expiresAt: T + 2_901 });
    await conflict(store.extendLease(read, 'a', T + 2_000, 1_000)); // a lost it
    await store.releaseLease(read, 'a'); // not a's: no-op, no error
    expect((await store.get(p, 'lease'))!.lease?.holder).toBe('b');
    await store.releaseLease(read, 'b');
    expect((await store.get(p, 'lease'))!.lease).toBeUndefined();
    await conflict(store.extendLease(read, 'b', T + 2_000, 1_000)); // released: nothing to extend
    await conflict(store.acquireLease({ ...read, version: 7 }, 'c', T, 1_000)); // wrong version
  });

  it('saveTokens: fenced by version and holder; releases the lease, resets failures, sets or removes dueAt', async () => {
    const read = await store.create(p, 'save', tokens('1'), T, T + 10);
    const leased = await store.acquireLease(read, 'a', T, 1_000);
    await conflict(store.saveTokens(leased, tokens('x'), T, { holder: 'b' }));
    const failed = await store.recordFailure(
      leased,
      'a',
      {
        error: { code: 'provider_unavailable', message: 'down' },
        needsReauth: false,
        retryAt: T + 60,
      },
      T + 1,
    );
    expect(failed).toMatchObject({
      version: 2,
      refreshFailures: 1,
      dueAt: T + 60,
      lastError: { code: 'provider_unavailable', at: T + 1 },
    });
    expect(await store.get(p, 'save')).toEqual(failed);
    await conflict(store.saveTokens(read, tokens('stale'), T)); // version 1 is gone
    const leased2 = await store.acquireLease(failed, 'a', T + 2, 1_000);
    const saved = await store.saveTokens(leased2, tokens('2'), T + 3, { holder: 'a' }); // no dueAt
    expect(saved).toMatchObject({
      version: 3,
      refreshFailures: 0,
      lastRefreshedAt: T + 3,
      createdAt: T,
    });
    expect(saved.dueAt).toBeUndefined();
    expect(await store.get(p, 'save')).toEqual(saved);
    const unfenced = await store.saveTokens(saved, tokens('3'), T + 4, { dueAt: T + 99 });
    expect(await store.get(p, 'save')).toEqual(unfenced);
    expect(unfenced).toMatchObject({ version: 4, dueAt: T + 99, tokens: tokens('3') });
  });

  it('recordFailure: needs_reauth leaves the due index; only the holder may record', async () => {
    const read = await store.create(p, 'fail', tokens('1'), T, T + 10);
    await conflict(
      store.recordFailure(read, 'a', { error: { code: 'x', message: 'y' }, needsReauth: true }, T),
    );
    const leased = await store.acquireLease(read, 'a', T, 1_000);
    const failed = await store.recordFailure(
      leased,
      'a',
      {
        error: { code: 'provider_rejected', message: 'refused' },
        needsReauth: true,
        retryAt: T + 60,
      },
      T,
    );
    expect(failed).toMatchObject({ status: 'needs_reauth', tokens: tokens('1') });
    expect(failed.dueAt).toBeUndefined();
    expect(await store.get(p, 'fail')).toEqual(failed);
  });

  it('reschedule: no version bump, refused under a live lease or at a stale version', async () => {
    const read = await store.create(p, 'resched', tokens('1'), T, T + 10);
    await store.reschedule(read, T + 20, T);
    expect(await store.get(p, 'resched')).toMatchObject({ version: 1, dueAt: T + 20 });
    await store.acquireLease(read, 'a', T, 1_000);
    await conflict(store.reschedule(read, T + 30, T + 500));
    await store.reschedule(read, T + 30, T + 1_001); // lapsed lease: fine
    await conflict(store.reschedule({ ...read, version: 2 }, T + 40, T + 2_000));
    expect((await store.get(p, 'resched'))!.dueAt).toBe(T + 30);
  });

  it('postponeUnreadable: moves dueAt and records why, at the version read only', async () => {
    const read = await store.create(p, 'unreadable', tokens('1'), T, T + 10);
    await store.postponeUnreadable(p, 'unreadable', 1, T + 3_600_000, T);
    expect(await store.get(p, 'unreadable')).toMatchObject({
      version: read.version,
      dueAt: T + 3_600_000,
      lastError: { code: 'internal_error', at: T },
    });
    await expect(store.postponeUnreadable(p, 'unreadable', 2, T, T)).rejects.toBeInstanceOf(
      VersionConflictError,
    );
  });

  it('claims: invisible to get; one claimer; create refused over it; taken over once lapsed; completed or abandoned', async () => {
    const claim = await store.claim(p, 'first', 'a', T, 1_000);
    expect(claim).toEqual({
      provider: p,
      connectionId: 'first',
      version: 0,
      createdAt: T,
      lease: { holder: 'a', expiresAt: T + 1_000 },
    });
    expect(await store.get(p, 'first')).toBeUndefined();
    await conflict(store.claim(p, 'first', 'b', T + 1_000, 1_000));
    await conflict(store.create(p, 'first', tokens('x'), T));
    await store.extendLease(claim, 'a', T + 500, 1_000);
    await conflict(store.claim(p, 'first', 'b', T + 1_200, 1_000)); // extended to T + 1500
    const taken = await store.claim(p, 'first', 'b', T + 1_501, 1_000);
    await conflict(store.saveTokens(claim, tokens('a'), T + 1_600, { holder: 'a' })); // a lost it
    await store.abandonClaim(claim, 'a'); // not a's any more: no-op
    const created = await store.saveTokens(taken, tokens('b'), T + 1_700, {
      holder: 'b',
      dueAt: T + 5,
    });
    expect(created).toMatchObject({
      version: 1,
      status: 'active',
      createdAt: T + 1_501,
      dueAt: T + 5,
    });
    expect(await store.get(p, 'first')).toEqual(created);
    await conflict(store.claim(p, 'first', 'c', T + 99_999, 1_000)); // a connection, not a claim

    const second = await store.claim(p, 'second', 'a', T, 1_000);
    await store.abandonClaim(second, 'a');
    expect(await store.get(p, 'second')).toBeUndefined();
    await store.claim(p, 'second', 'c', T, 1_000); // free again at once
  });

  it('queryDue: one shard, due by `until`, soonest first, page by page', async () => {
    const base = 50_000; // a window of its own in the shared table
    const ids = Array.from({ length: 40 }, (_, i) => `due-${String(i).padStart(2, '0')}`);
    for (const [i, id] of ids.entries()) await store.create(p, id, tokens(id), T, base + i);
    await store.create(p, 'later', tokens('later'), T, base + 1_000);
    const seen: string[] = [];
    for (const shard of allDueShards()) {
      let page: Record<string, unknown> | undefined;
      const inShard: number[] = [];
      do {
        const result = await store.queryDue(shard, base + 100, {
          limit: 3,
          ...(page ? { page } : {}),
        });
        expect(result.unreadable).toEqual([]);
        for (const c of result.connections.filter((c) => c.provider === p && c.dueAt! >= base)) {
          expect(dueShardFor(connectionPk(p, c.connectionId))).toBe(shard);
          inShard.push(c.dueAt!);
          seen.push(c.connectionId);
        }
        page = result.nextPage;
      } while (page);
      expect(inShard).toEqual([...inShard].sort((a, b) => a - b));
    }
    expect(seen.sort()).toEqual(ids);
  });
});
