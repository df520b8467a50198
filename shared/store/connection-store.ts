import {
  GetCommand,
  PutCommand,
  QueryCommand,
  UpdateCommand,
  type DynamoDBDocumentClient,
} from '@aws-sdk/lib-dynamodb';
import type { Envelope } from '../crypto/envelope.ts';
import { BrokerError, VersionConflictError } from '../errors.ts';
import type { TokenSet } from '../providers/types.ts';
import { isConditionalCheckFailed } from './conditional.ts';
import { connectionPk, dueIndex, dueShardFor } from './table.ts';

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

/** The item as stored: no token in clear, only the envelope ciphertext. */
interface ConnectionItem {
  pk: string;
  type: 'connection';
  provider: string;
  connectionId: string;
  status: ConnectionStatus;
  version: number;
  tokens: string;
  accessTokenExpiresAt?: number;
  refreshTokenExpiresAt?: number;
  createdAt: number;
  updatedAt: number;
  lastRefreshedAt?: number;
  lastError?: ConnectionError;
  refreshFailures?: number;
  /** Due index keys: present only while the refresher should renew the connection. */
  dueShard?: string;
  dueAt?: number;
  leaseHolder?: string;
  leaseExpiresAt?: number;
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
 * Connections in the DynamoDB token table (the same adapter serves AWS, moto and the embedded
 * store). Reads are strongly consistent: refresh decisions must see the latest refresh token.
 * Every write is conditional on the version read.
 */
export class ConnectionStore {
  constructor(
    private readonly db: DynamoDBDocumentClient,
    private readonly tableName: string,
    private readonly envelope: Envelope,
  ) {}

  async get(provider: string, connectionId: string): Promise<Connection | undefined> {
    const out = await this.db.send(
      new GetCommand({
        TableName: this.tableName,
        Key: { pk: connectionPk(provider, connectionId) },
        ConsistentRead: true,
      }),
    );
    return out.Item ? this.fromItem(out.Item as ConnectionItem) : undefined;
  }

  /**
   * One page of connections due by `until` in one shard of the due index, soonest first. GSI
   * reads are eventually consistent: callers treat them as hints and write conditionally.
   */
  async queryDue(
    shard: string,
    until: number,
    options: { limit?: number; page?: Record<string, unknown> } = {},
  ): Promise<DuePage> {
    const out = await this.db.send(
      new QueryCommand({
        TableName: this.tableName,
        IndexName: dueIndex.name,
        KeyConditionExpression: '#shard = :shard AND #due <= :until',
        ExpressionAttributeNames: { '#shard': dueIndex.partitionKey, '#due': dueIndex.sortKey },
        ExpressionAttributeValues: { ':shard': shard, ':until': until },
        Limit: options.limit ?? 100,
        ...(options.page ? { ExclusiveStartKey: options.page } : {}),
      }),
    );
    // Each item on its own: one that cannot be decrypted heads its shard (the oldest dueAt), so
    // failing the page for it would fail every run and starve the whole shard.
    const items = (out.Items ?? []) as ConnectionItem[];
    const settled = await Promise.allSettled(items.map((item) => this.fromItem(item)));
    const connections: Connection[] = [];
    const unreadable: UnreadableDue[] = [];
    settled.forEach((result, i) => {
      if (result.status === 'fulfilled') {
        connections.push(result.value);
        return;
      }
      const item = items[i]!;
      const error = result.reason as Error;
      unreadable.push({
        provider: item.provider,
        connectionId: item.connectionId,
        status: item.status,
        version: item.version,
        dueAt: item.dueAt!, // every item of the due index has one
        errorName: ((error.cause as Error | undefined) ?? error).name,
      });
    });
    return {
      connections,
      unreadable,
      ...(out.LastEvaluatedKey ? { nextPage: out.LastEvaluatedKey } : {}),
    };
  }

  /**
   * Sets aside a due item whose tokens cannot be decrypted: moves its due time to `dueAt` and
   * records why, without reading its tokens, so it no longer heads its shard on every run. No
   * version bump: its tokens are unchanged. Conditional on the version read, so a newer write
   * (a reconnect with new tokens) stands; VersionConflictError otherwise.
   */
  async postponeUnreadable(
    provider: string,
    connectionId: string,
    version: number,
    dueAt: number,
    now: number,
  ): Promise<void> {
    await this.conditional(
      new UpdateCommand({
        TableName: this.tableName,
        Key: { pk: connectionPk(provider, connectionId) },
        UpdateExpression: 'SET dueAt = :dueAt, lastError = :lastError',
        ConditionExpression: 'version = :version',
        ExpressionAttributeValues: {
          ':dueAt': dueAt,
          ':lastError': { ...unreadableTokensError, at: now },
          ':version': version,
        },
      }),
    );
  }

  /** Creates a connection; VersionConflictError if one already exists. */
  async create(
    provider: string,
    connectionId: string,
    tokens: TokenSet,
    now: number,
    dueAt?: number,
  ): Promise<Connection> {
    const pk = connectionPk(provider, connectionId);
    const item: ConnectionItem = {
      pk,
      type: 'connection',
      provider,
      connectionId,
      status: 'active',
      version: 1,
      tokens: await this.encryptTokens(provider, connectionId, tokens),
      ...expiries(tokens),
      createdAt: now,
      updatedAt: now,
      lastRefreshedAt: now,
      refreshFailures: 0,
      ...(dueAt !== undefined ? { dueShard: dueShardFor(pk), dueAt } : {}),
    };
    await this.conditional(
      new PutCommand({
        TableName: this.tableName,
        Item: item,
        ConditionExpression: 'attribute_not_exists(pk)',
      }),
    );
    return this.fromItemWithTokens(item, tokens);
  }

  /**
   * Takes the refresh lease: only if nobody wrote since `current` was read and no live lease is
   * held. VersionConflictError otherwise (re-read and decide again).
   */
  async acquireLease(
    current: Connection,
    holder: string,
    now: number,
    leaseMs: number,
  ): Promise<Connection> {
    const expiresAt = now + leaseMs;
    await this.conditional(
      new UpdateCommand({
        TableName: this.tableName,
        Key: { pk: connectionPk(current.provider, current.connectionId) },
        UpdateExpression: 'SET leaseHolder = :holder, leaseExpiresAt = :expiresAt',
        ConditionExpression:
          'version = :version AND (attribute_not_exists(leaseHolder) OR leaseExpiresAt < :now)',
        ExpressionAttributeValues: {
          ':holder': holder,
          ':expiresAt': expiresAt,
          ':version': current.version,
          ':now': now,
        },
      }),
    );
    return { ...current, lease: { holder, expiresAt } };
  }

  /**
   * Writes renewed tokens and their next due time, and releases the lease. Fenced: the write
   * happens only while the item is at the version we read *and* (when `holder` is given) still
   * leased to us, so a holder whose lease lapsed can never overwrite a newer write.
   */
  async saveTokens(
    current: Connection,
    tokens: TokenSet,
    now: number,
    options: { holder?: string; dueAt?: number } = {},
  ): Promise<Connection> {
    const pk = connectionPk(current.provider, current.connectionId);
    const update = new UpdateBuilder()
      .set('tokens', await this.encryptTokens(current.provider, current.connectionId, tokens))
      .set('#status', 'active')
      .set('version', current.version + 1)
      .set('updatedAt', now)
      .set('lastRefreshedAt', now)
      .set('refreshFailures', 0)
      .remove('leaseHolder', 'leaseExpiresAt', 'lastError');
    const { accessTokenExpiresAt, refreshTokenExpiresAt } = expiries(tokens);
    update.setOrRemove('accessTokenExpiresAt', accessTokenExpiresAt);
    update.setOrRemove('refreshTokenExpiresAt', refreshTokenExpiresAt);
    update.setOrRemove('dueShard', options.dueAt !== undefined ? dueShardFor(pk) : undefined);
    update.setOrRemove('dueAt', options.dueAt);
    await this.conditional(
      new UpdateCommand({
        TableName: this.tableName,
        Key: { pk },
        ...update.build(current.version, options.holder),
      }),
    );
    const { lease: _lease, lastError: _lastError, dueAt: _dueAt, ...rest } = current;
    return {
      ...rest,
      status: 'active',
      version: current.version + 1,
      tokens,
      updatedAt: now,
      lastRefreshedAt: now,
      refreshFailures: 0,
      ...(options.dueAt !== undefined ? { dueAt: options.dueAt } : {}),
    };
  }

  /**
   * Records a failed renewal and releases our lease. The stored tokens are left as they were.
   * `needsReauth` takes the connection out of service and out of the due index; otherwise it
   * stays due again at `retryAt` (the backoff).
   */
  async recordFailure(
    current: Connection,
    holder: string,
    failure: FailureRecord,
    now: number,
  ): Promise<Connection> {
    const pk = connectionPk(current.provider, current.connectionId);
    const lastError = { ...failure.error, at: now };
    const status: ConnectionStatus = failure.needsReauth ? 'needs_reauth' : current.status;
    const dueAt = failure.needsReauth ? undefined : failure.retryAt;
    const update = new UpdateBuilder()
      .set('lastError', lastError)
      .set('#status', status)
      .set('version', current.version + 1)
      .set('updatedAt', now)
      .set('refreshFailures', current.refreshFailures + 1)
      .remove('leaseHolder', 'leaseExpiresAt');
    update.setOrRemove('dueShard', dueAt !== undefined ? dueShardFor(pk) : undefined);
    update.setOrRemove('dueAt', dueAt);
    await this.conditional(
      new UpdateCommand({
        TableName: this.tableName,
        Key: { pk },
        ...update.build(current.version, holder),
      }),
    );
    const { lease: _lease, dueAt: _dueAt, ...rest } = current;
    return {
      ...rest,
      status,
      lastError,
      version: current.version + 1,
      updatedAt: now,
      refreshFailures: current.refreshFailures + 1,
      ...(dueAt !== undefined ? { dueAt } : {}),
    };
  }

  /**
   * Moves a connection's due time without touching its tokens or version (readers of this version
   * see the same tokens either way). Conditional on the version and on no live lease, so it never
   * undoes a newer write. VersionConflictError otherwise; callers just move on.
   */
  async reschedule(current: Connection, dueAt: number, now: number): Promise<void> {
    const pk = connectionPk(current.provider, current.connectionId);
    await this.conditional(
      new UpdateCommand({
        TableName: this.tableName,
        Key: { pk },
        UpdateExpression: 'SET dueShard = :shard, dueAt = :dueAt',
        ConditionExpression:
          'version = :version AND (attribute_not_exists(leaseHolder) OR leaseExpiresAt < :now)',
        ExpressionAttributeValues: {
          ':shard': dueShardFor(pk),
          ':dueAt': dueAt,
          ':version': current.version,
          ':now': now,
        },
      }),
    );
  }

  /** Gives the lease back without writing tokens (someone else had already renewed). */
  async releaseLease(current: Connection, holder: string): Promise<void> {
    try {
      await this.conditional(
        new UpdateCommand({
          TableName: this.tableName,
          Key: { pk: connectionPk(current.provider, current.connectionId) },
          UpdateExpression: 'REMOVE leaseHolder, leaseExpiresAt',
          ConditionExpression: 'version = :version AND leaseHolder = :holder',
          ExpressionAttributeValues: { ':version': current.version, ':holder': holder },
        }),
      );
    } catch (error) {
      // Lost the lease already: it lapses or was taken over; nothing of ours to give back.
      if (!(error instanceof VersionConflictError)) throw error;
    }
  }

  private encryptTokens(provider: string, connectionId: string, tokens: TokenSet) {
    return this.envelope.encrypt(JSON.stringify(tokens), tokensContext(provider, connectionId));
  }

  private async conditional(command: PutCommand | UpdateCommand): Promise<void> {
    try {
      await this.db.send(command as UpdateCommand);
    } catch (error) {
      if (isConditionalCheckFailed(error)) throw new VersionConflictError();
      throw error;
    }
  }

  private async fromItem(item: ConnectionItem): Promise<Connection> {
    let tokens: TokenSet;
    try {
      tokens = JSON.parse(
        await this.envelope.decrypt(item.tokens, tokensContext(item.provider, item.connectionId)),
      ) as TokenSet;
    } catch (cause) {
      throw new BrokerError(
        'internal_error',
        `The stored tokens of ${item.provider}/${item.connectionId} could not be decrypted.`,
        { cause },
      );
    }
    return this.fromItemWithTokens(item, tokens);
  }

  private fromItemWithTokens(item: ConnectionItem, tokens: TokenSet): Connection {
    return {
      provider: item.provider,
      connectionId: item.connectionId,
      status: item.status,
      version: item.version,
      tokens,
      createdAt: item.createdAt,
      updatedAt: item.updatedAt,
      refreshFailures: item.refreshFailures ?? 0,
      ...(item.lastRefreshedAt !== undefined ? { lastRefreshedAt: item.lastRefreshedAt } : {}),
      ...(item.lastError ? { lastError: item.lastError } : {}),
      ...(item.dueAt !== undefined ? { dueAt: item.dueAt } : {}),
      ...(item.leaseHolder && item.leaseExpiresAt !== undefined
        ? { lease: { holder: item.leaseHolder, expiresAt: item.leaseExpiresAt } }
        : {}),
    };
  }
}

/**
 * Builds a versioned update: SET/REMOVE clauses, always conditional on the version read and,
 * given a holder, on still holding the lease.
 */
class UpdateBuilder {
  private readonly sets: string[] = [];
  private readonly removes: string[] = [];
  private readonly values: Record<string, unknown> = {};

  private readonly names: Record<string, string> = {};

  /** `#name` for attribute names that are DynamoDB reserved words (status). */
  set(name: string, value: unknown): this {
    const attribute = name.replace('#', '');
    if (name.startsWith('#')) this.names[name] = attribute;
    this.sets.push(`${name} = :${attribute}`);
    this.values[`:${attribute}`] = value;
    return this;
  }

  remove(...names: string[]): this {
    this.removes.push(...names);
    return this;
  }

  setOrRemove(name: string, value: unknown): this {
    return value === undefined ? this.remove(name) : this.set(name, value);
  }

  build(expectedVersion: number, holder?: string) {
    return {
      UpdateExpression: `SET ${this.sets.join(', ')} REMOVE ${this.removes.join(', ')}`,
      ConditionExpression: holder
        ? 'version = :expected AND leaseHolder = :holder'
        : 'version = :expected',
      ...(Object.keys(this.names).length > 0 ? { ExpressionAttributeNames: this.names } : {}),
      ExpressionAttributeValues: {
        ...this.values,
        ':expected': expectedVersion,
        ...(holder ? { ':holder': holder } : {}),
      },
    };
  }
}

/** Expiry times kept in clear beside the ciphertext, for listing and scheduling. */
function expiries(tokens: TokenSet): {
  accessTokenExpiresAt?: number;
  refreshTokenExpiresAt?: number;
} {
  return {
    ...(tokens.expiresAt !== undefined ? { accessTokenExpiresAt: tokens.expiresAt } : {}),
    ...(tokens.refreshTokenExpiresAt !== undefined
      ? { refreshTokenExpiresAt: tokens.refreshTokenExpiresAt }
      : {}),
  };
}
