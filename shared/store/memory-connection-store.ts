import { VersionConflictError } from '../errors.ts';
import type { TokenSet } from '../providers/types.ts';
import {
  failedConnection,
  savedConnection,
  unreadableTokensError,
  type Claim,
  type Connection,
  type ConnectionStore,
  type DuePage,
  type FailureRecord,
  type ReadItem,
} from './connection-store.ts';
import { connectionPk, dueShardFor } from './table.ts';
import type { UpdateCondition } from './update-expression.ts';

/** A connection as this store keeps it: a Connection, or a claim (no tokens yet, version 0). */
type MemoryItem = Omit<Connection, 'tokens' | 'status'> & {
  status: Connection['status'] | 'pending';
  tokens?: TokenSet;
  dueShard?: string;
};

/**
 * The token store in memory, for the protocol's unit tests (no store server, milliseconds a
 * test). It keeps DynamoDB's conditional-write semantics exactly — the same conditions on version,
 * lease holder and live lease, a refused one always VersionConflictError — and
 * test/connection-store-contract.test.ts runs one suite against both adapters so they cannot
 * drift. Every value goes in and out as a copy, as it would through a real store.
 */
export class MemoryConnectionStore implements ConnectionStore {
  private readonly items = new Map<string, MemoryItem>();

  async get(provider: string, connectionId: string): Promise<Connection | undefined> {
    const item = this.items.get(connectionPk(provider, connectionId));
    return item?.tokens ? toConnection(item) : undefined;
  }

  async queryDue(
    shard: string,
    until: number,
    options: { limit?: number; page?: Record<string, unknown> } = {},
  ): Promise<DuePage> {
    const due = [...this.items.entries()]
      .filter(
        ([, item]) => item.dueShard === shard && item.dueAt !== undefined && item.dueAt <= until,
      )
      .sort(([pkA, a], [pkB, b]) => a.dueAt! - b.dueAt! || pkA.localeCompare(pkB));
    const after = options.page?.pk;
    const start = after === undefined ? 0 : due.findIndex(([pk]) => pk === after) + 1;
    const limit = options.limit ?? 100;
    const page = due.slice(start, start + limit);
    const last = page.at(-1);
    return {
      connections: page.map(([, item]) => toConnection(item)),
      unreadable: [],
      ...(last && start + limit < due.length
        ? { nextPage: { pk: last[0], dueShard: shard, dueAt: last[1].dueAt } }
        : {}),
    };
  }

  async postponeUnreadable(
    provider: string,
    connectionId: string,
    version: number,
    dueAt: number,
    now: number,
  ): Promise<void> {
    this.update(provider, connectionId, { version }, (item) => ({
      ...item,
      dueAt,
      lastError: { ...unreadableTokensError, at: now },
    }));
  }

  async create(
    provider: string,
    connectionId: string,
    tokens: TokenSet,
    now: number,
    dueAt?: number,
  ): Promise<Connection> {
    const pk = connectionPk(provider, connectionId);
    if (this.items.has(pk)) throw new VersionConflictError();
    const item: MemoryItem = {
      provider,
      connectionId,
      status: 'active',
      version: 1,
      tokens: structuredClone(tokens),
      createdAt: now,
      updatedAt: now,
      lastRefreshedAt: now,
      refreshFailures: 0,
      ...(dueAt !== undefined ? { dueShard: dueShardFor(pk), dueAt } : {}),
    };
    this.items.set(pk, item);
    return toConnection(item);
  }

  async claim(
    provider: string,
    connectionId: string,
    holder: string,
    now: number,
    leaseMs: number,
  ): Promise<Claim> {
    const pk = connectionPk(provider, connectionId);
    const existing = this.items.get(pk);
    const lapsedClaim = existing?.status === 'pending' && existing.lease!.expiresAt < now;
    if (existing && !lapsedClaim) throw new VersionConflictError();
    const lease = { holder, expiresAt: now + leaseMs };
    this.items.set(pk, {
      provider,
      connectionId,
      status: 'pending',
      version: 0,
      createdAt: now,
      updatedAt: now,
      refreshFailures: 0,
      lease,
    });
    return { provider, connectionId, version: 0, createdAt: now, lease: { ...lease } };
  }

  async abandonClaim(claim: Claim, holder: string): Promise<void> {
    const pk = connectionPk(claim.provider, claim.connectionId);
    const item = this.items.get(pk);
    if (item?.version === 0 && item.lease?.holder === holder) this.items.delete(pk);
  }

  async acquireLease(
    current: Connection,
    holder: string,
    now: number,
    leaseMs: number,
  ): Promise<Connection> {
    const lease = { holder, expiresAt: now + leaseMs };
    this.update(
      current.provider,
      current.connectionId,
      { version: current.version, noLiveLeaseAt: now },
      (item) => ({ ...item, lease }),
    );
    return { ...current, lease: { ...lease } };
  }

  async extendLease(
    current: ReadItem,
    holder: string,
    now: number,
    leaseMs: number,
  ): Promise<void> {
    this.update(
      current.provider,
      current.connectionId,
      { version: current.version, holder },
      (item) => ({
        ...item,
        lease: { holder, expiresAt: now + leaseMs },
      }),
    );
  }

  async releaseLease(current: ReadItem, holder: string): Promise<void> {
    try {
      this.update(
        current.provider,
        current.connectionId,
        { version: current.version, holder },
        withoutLease,
      );
    } catch (error) {
      if (!(error instanceof VersionConflictError)) throw error;
    }
  }

  async saveTokens(
    current: ReadItem,
    tokens: TokenSet,
    now: number,
    options: { holder?: string; dueAt?: number } = {},
  ): Promise<Connection> {
    const saved = savedConnection(current, structuredClone(tokens), now, options.dueAt);
    const pk = connectionPk(current.provider, current.connectionId);
    this.update(
      current.provider,
      current.connectionId,
      {
        version: current.version,
        ...(options.holder !== undefined ? { holder: options.holder } : {}),
      },
      (item) => ({
        ...withoutDue(withoutLease(item)),
        ...saved,
        // lastError goes; createdAt stays the item's own (a claim's)
        createdAt: item.createdAt,
        ...(options.dueAt !== undefined ? { dueShard: dueShardFor(pk) } : {}),
      }),
      ['lastError'],
    );
    return saved;
  }

  async recordFailure(
    current: Connection,
    holder: string,
    failure: FailureRecord,
    now: number,
  ): Promise<Connection> {
    const recorded = failedConnection(current, failure, now);
    const pk = connectionPk(current.provider, current.connectionId);
    this.update(
      current.provider,
      current.connectionId,
      { version: current.version, holder },
      (item) => ({
        ...withoutDue(withoutLease(item)),
        status: recorded.status,
        lastError: recorded.lastError!,
        version: recorded.version,
        updatedAt: now,
        refreshFailures: recorded.refreshFailures,
        ...(recorded.dueAt !== undefined
          ? { dueAt: recorded.dueAt, dueShard: dueShardFor(pk) }
          : {}),
      }),
    );
    return recorded;
  }

  async reschedule(current: Connection, dueAt: number, now: number): Promise<void> {
    const pk = connectionPk(current.provider, current.connectionId);
    this.update(
      current.provider,
      current.connectionId,
      { version: current.version, noLiveLeaseAt: now },
      (item) => ({ ...item, dueAt, dueShard: dueShardFor(pk) }),
    );
  }

  /** A conditional update, checked as DynamoDB checks its ConditionExpression. */
  private update(
    provider: string,
    connectionId: string,
    condition: UpdateCondition,
    change: (item: MemoryItem) => MemoryItem,
    remove: (keyof MemoryItem)[] = [],
  ): void {
    const pk = connectionPk(provider, connectionId);
    const item = this.items.get(pk);
    const holds = condition.holder === undefined || item?.lease?.holder === condition.holder;
    const noLiveLease =
      condition.noLiveLeaseAt === undefined ||
      item?.lease === undefined ||
      item.lease.expiresAt < condition.noLiveLeaseAt;
    if (!item || item.version !== condition.version || !holds || !noLiveLease) {
      throw new VersionConflictError();
    }
    const next = structuredClone(change(item));
    for (const key of remove) delete next[key];
    this.items.set(pk, next);
  }
}

function toConnection(item: MemoryItem): Connection {
  const { dueShard: _dueShard, ...connection } = structuredClone(item);
  return connection as Connection;
}

function withoutLease(item: MemoryItem): MemoryItem {
  const { lease: _lease, ...rest } = item;
  return rest;
}

function withoutDue(item: MemoryItem): MemoryItem {
  const { dueAt: _dueAt, dueShard: _dueShard, ...rest } = item;
  return rest;
}
