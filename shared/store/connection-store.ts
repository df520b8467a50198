import type { TokenSet } from '../providers/types.ts';

/*
 * The token store port: what the refresh protocol, the refresher and the connect flows need of
 * the table, and the types they exchange. Two adapters implement it with the same conditional-write
 * semantics (test/connection-store-contract.test.ts holds them to it): DynamoDB
 * (`dynamo-connection-store.ts`, for AWS, moto and dynalite) and memory
 * (`memory-connection-store.ts`, for the protocol's unit tests).
 */

export type ConnectionStatus = 'active' | 'needs_reauth';

export interface ConnectionError {
  code: string;
  message: string;
  /** Epoch ms. */
  at: number;
}

/** A connection as the core sees it: tokens decrypted, times in epoch ms. */
export interface Connection {
  provider: string;
  connectionId: string;
  status: ConnectionStatus;
  /** Bumped by every write of the item; every write is conditional on the value it read. */
  version: number;
  tokens: TokenSet;
  createdAt: number;
  updatedAt: number;
  lastRefreshedAt?: number;
  lastError?: ConnectionError;
  /** Consecutive failed renewals (drives the backoff); 0 after a success. */
  refreshFailures: number;
  /** When the refresher should renew it (epoch ms); absent = not in the due index. */
  dueAt?: number;
  /** Who holds the refresh lease, and until when (epoch ms). */
  lease?: { holder: string; expiresAt: number };
}

/**
 * A due item whose tokens could not be decrypted (restored under another key, corrupted, key
 * access denied): only its keys, so the refresher can set it aside instead of failing its run.
 */
export interface UnreadableDue {
  provider: string;
  connectionId: string;
  status: ConnectionStatus;
  version: number;
  dueAt: number;
  /** The decrypt error's name (e.g. AccessDeniedException); never its message or the ciphertext. */
  errorName: string;
}

export interface DuePage {
  /** Soonest first. */
  connections: Connection[];
  /** Items of this page that could not be decrypted; `connections` holds the others. */
  unreadable: UnreadableDue[];
  /** Pass back to read the next page; absent after the last one. */
  nextPage?: Record<string, unknown>;
}

/** What a failed renewal leaves behind. */
export interface FailureRecord {
  error: { code: string; message: string };
  /** Take the connection out of service until a person consents again. */
  needsReauth: boolean;
  /** When the refresher should try again (epoch ms); ignored with needsReauth. */
  retryAt?: number;
}

/** What a connection whose stored tokens cannot be decrypted records as its last error. */
export const unreadableTokensError = {
  code: 'internal_error',
  message: 'The stored tokens could not be decrypted.',
} as const;

/** Binds a tokens ciphertext to its connection: copied onto another item, it will not decrypt. */
export function tokensContext(provider: string, connectionId: string) {
  return { purpose: 'connection-tokens', provider, connectionId };
}

/**
 * A not-yet-existing connection claimed for its first mint: an item with no tokens, version 0,
 * under the claimer's lease. Invisible to `get` until its tokens are written.
 */
export interface Claim {
  provider: string;
  connectionId: string;
  version: 0;
  createdAt: number;
  lease: { holder: string; expiresAt: number };
}

/** What a fenced write needs of the item it read. */
export type ReadItem = Pick<Connection, 'provider' | 'connectionId' | 'version' | 'createdAt'>;

/**
 * Connections, and the refresh lease on each. Every write is conditional on the version read;
 * lease-holder writes also on still holding the lease. A refused condition is always
 * VersionConflictError (re-read and decide again); any other error is the store failing.
 * Reads are strongly consistent, except `queryDue` (an index: a hint).
 */
export interface ConnectionStore {
  /** A connection with tokens; undefined when none exists (or only a claim does). */
  get(provider: string, connectionId: string): Promise<Connection | undefined>;

  /** One page of one shard of the due index: `dueAt <= until`, soonest first. */
  queryDue(
    shard: string,
    until: number,
    options?: { limit?: number; page?: Record<string, unknown> },
  ): Promise<DuePage>;

  /**
   * Sets aside a due item whose tokens cannot be decrypted: moves its due time and records why,
   * without reading its tokens or bumping its version. Conditional on the version.
   */
  postponeUnreadable(
    provider: string,
    connectionId: string,
    version: number,
    dueAt: number,
    now: number,
  ): Promise<void>;

  /** Creates a connection at version 1; refused if any item (a claim too) exists. */
  create(
    provider: string,
    connectionId: string,
    tokens: TokenSet,
    now: number,
    dueAt?: number,
  ): Promise<Connection>;

  /**
   * Claims a not-yet-existing connection for its first mint: refused while a connection or a
   * live claim exists; a lapsed claim (its claimer died) is taken over.
   */
  claim(
    provider: string,
    connectionId: string,
    holder: string,
    now: number,
    leaseMs: number,
  ): Promise<Claim>;

  /** Deletes our claim after a failed mint, so the next caller can claim at once. */
  abandonClaim(claim: Claim, holder: string): Promise<void>;

  /** Takes the lease: the version is the one read and no live lease is held. */
  acquireLease(
    current: Connection,
    holder: string,
    now: number,
    leaseMs: number,
  ): Promise<Connection>;

  /** The heartbeat: moves our lease's end to now + leaseMs, while we still hold it. */
  extendLease(current: ReadItem, holder: string, now: number, leaseMs: number): Promise<void>;

  /** Gives our lease back without writing (a renewal that will not run after all). */
  releaseLease(current: ReadItem, holder: string): Promise<void>;

  /**
   * Writes renewed tokens (version + 1), their next due time, and releases the lease. With
   * `holder`, only while we still hold the lease; without, fenced by the version alone.
   * A claim's tokens are written this way too (version 0 → 1).
   */
  saveTokens(
    current: ReadItem,
    tokens: TokenSet,
    now: number,
    options?: { holder?: string; dueAt?: number },
  ): Promise<Connection>;

  /** Records a failed renewal (version + 1) and releases our lease; the tokens stay as they are. */
  recordFailure(
    current: Connection,
    holder: string,
    failure: FailureRecord,
    now: number,
  ): Promise<Connection>;

  /** Moves the due time without a version bump; only at the version read and with no live lease. */
  reschedule(current: Connection, dueAt: number, now: number): Promise<void>;
}

/** The connection a successful `saveTokens` leaves: every adapter answers with the same. */
export function savedConnection(
  current: ReadItem,
  tokens: TokenSet,
  now: number,
  dueAt: number | undefined,
): Connection {
  return {
    provider: current.provider,
    connectionId: current.connectionId,
    status: 'active',
    version: current.version + 1,
    tokens,
    createdAt: current.createdAt,
    updatedAt: now,
    lastRefreshedAt: now,
    refreshFailures: 0,
    ...(dueAt !== undefined ? { dueAt } : {}),
  };
}

/**
 * The connection a `recordFailure` leaves: `needsReauth` takes it out of service and out of the
 * due index; otherwise it stays due again at `retryAt` (the backoff). Tokens unchanged.
 */
export function failedConnection(
  current: Connection,
  failure: FailureRecord,
  now: number,
): Connection {
  const { lease: _lease, dueAt: _dueAt, ...rest } = current;
  const dueAt = failure.needsReauth ? undefined : failure.retryAt;
  return {
    ...rest,
    status: failure.needsReauth ? 'needs_reauth' : current.status,
    lastError: { ...failure.error, at: now },
    version: current.version + 1,
    updatedAt: now,
    refreshFailures: current.refreshFailures + 1,
    ...(dueAt !== undefined ? { dueAt } : {}),
  };
}
