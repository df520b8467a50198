import { GetItemCommand } from '@aws-sdk/client-dynamodb';
import { unmarshall } from '@aws-sdk/util-dynamodb';
import {
  DeleteCommand,
  PutCommand,
  QueryCommand,
  UpdateCommand,
  type DynamoDBDocumentClient,
} from '@aws-sdk/lib-dynamodb';
import type { Envelope } from '../crypto/envelope.ts';
import { BrokerError, VersionConflictError } from '../errors.ts';
import type { TokenSet } from '../providers/types.ts';
import { isConditionalCheckFailed } from './conditional.ts';
import {
  failedConnection,
  savedConnection,
  tokensContext,
  unreadableTokensError,
  type Claim,
  type Connection,
  type ConnectionError,
  type ConnectionStatus,
  type ConnectionStore,
  type DuePage,
  type FailureRecord,
  type ReadItem,
  type UnreadableDue,
} from './connection-store.ts';
import { connectionPk, dueIndex, dueShardFor } from './table.ts';
import { VersionedUpdate, type UpdateCondition } from './update-expression.ts';

/**
 * The item as stored: no token in clear, only the envelope ciphertext. A claim (a first mint
 * under way) is an item with status `pending`, version 0, a lease and no tokens yet.
 */
interface ConnectionItem {
  pk: string;
  type: 'connection';
  provider: string;
  connectionId: string;
  status: ConnectionStatus | 'pending';
  version: number;
  tokens?: string;
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
 * Connections in the DynamoDB token table (the same adapter serves AWS, moto and the embedded
 * store). Reads are strongly consistent: refresh decisions must see the latest refresh token.
 * Every write is conditional on the version read (`VersionedUpdate`).
 */
export class DynamoConnectionStore implements ConnectionStore {
  constructor(
    private readonly db: DynamoDBDocumentClient,
    private readonly tableName: string,
    private readonly envelope: Envelope,
  ) {}

  async get(provider: string, connectionId: string): Promise<Connection | undefined> {
    // The token path's one read, on the plain command: the document client's marshalling
    // middleware costs more per call than unmarshalling the one item here.
    const out = await this.db.send(
      new GetItemCommand({
        TableName: this.tableName,
        Key: { pk: { S: connectionPk(provider, connectionId) } },
        ConsistentRead: true,
      }),
    );
    const item = out.Item ? (unmarshall(out.Item) as ConnectionItem) : undefined;
    return item?.tokens !== undefined ? this.fromItem(item) : undefined;
  }

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
        status: item.status as ConnectionStatus, // due items always have tokens
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

  async postponeUnreadable(
    provider: string,
    connectionId: string,
    version: number,
    dueAt: number,
    now: number,
  ): Promise<void> {
    await this.update(
      provider,
      connectionId,
      new VersionedUpdate()
        .set('dueAt', dueAt)
        .set('lastError', { ...unreadableTokensError, at: now }),
      { version },
    );
  }

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

  async claim(
    provider: string,
    connectionId: string,
    holder: string,
    now: number,
    leaseMs: number,
  ): Promise<Claim> {
    const item: ConnectionItem = {
      pk: connectionPk(provider, connectionId),
      type: 'connection',
      provider,
      connectionId,
      status: 'pending',
      version: 0,
      createdAt: now,
      updatedAt: now,
      leaseHolder: holder,
      leaseExpiresAt: now + leaseMs,
    };
    await this.conditional(
      new PutCommand({
        TableName: this.tableName,
        Item: item,
        ConditionExpression:
          'attribute_not_exists(pk) OR (#status = :pending AND leaseExpiresAt < :now)',
        ExpressionAttributeNames: { '#status': 'status' },
        ExpressionAttributeValues: { ':pending': 'pending', ':now': now },
      }),
    );
    return {
      provider,
      connectionId,
      version: 0,
      createdAt: now,
      lease: { holder, expiresAt: now + leaseMs },
    };
  }

  async abandonClaim(claim: Claim, holder: string): Promise<void> {
    try {
      await this.conditional(
        new DeleteCommand({
          TableName: this.tableName,
          Key: { pk: connectionPk(claim.provider, claim.connectionId) },
          ConditionExpression: 'version = :zero AND leaseHolder = :holder',
          ExpressionAttributeValues: { ':zero': 0, ':holder': holder },
        }),
      );
    } catch (error) {
      // Taken over already: the new claimer owns it now.
      if (!(error instanceof VersionConflictError)) throw error;
    }
  }

  async acquireLease(
    current: Connection,
    holder: string,
    now: number,
    leaseMs: number,
  ): Promise<Connection> {
    const expiresAt = now + leaseMs;
    await this.update(
      current.provider,
      current.connectionId,
      new VersionedUpdate().set('leaseHolder', holder).set('leaseExpiresAt', expiresAt),
      { version: current.version, noLiveLeaseAt: now },
    );
    return { ...current, lease: { holder, expiresAt } };
  }

  async extendLease(
    current: ReadItem,
    holder: string,
    now: number,
    leaseMs: number,
  ): Promise<void> {
    await this.update(
      current.provider,
      current.connectionId,
      new VersionedUpdate().set('leaseExpiresAt', now + leaseMs),
      { version: current.version, holder },
    );
  }

  async releaseLease(current: ReadItem, holder: string): Promise<void> {
    try {
      await this.update(
        current.provider,
        current.connectionId,
        new VersionedUpdate().remove('leaseHolder', 'leaseExpiresAt'),
        { version: current.version, holder },
      );
    } catch (error) {
      // Lost the lease already: it lapsed or was taken over; nothing of ours to give back.
      if (!(error instanceof VersionConflictError)) throw error;
    }
  }

  async saveTokens(
    current: ReadItem,
    tokens: TokenSet,
    now: number,
    options: { holder?: string; dueAt?: number } = {},
  ): Promise<Connection> {
    const pk = connectionPk(current.provider, current.connectionId);
    const update = new VersionedUpdate()
      .set('tokens', await this.encryptTokens(current.provider, current.connectionId, tokens))
      .set('#status', 'active')
      .set('version', current.version + 1)
      .set('updatedAt', now)
      .set('lastRefreshedAt', now)
      .set('refreshFailures', 0)
      .remove('leaseHolder', 'leaseExpiresAt', 'lastError');
    const { accessTokenExpiresAt, refreshTokenExpiresAt, expiryAssumed, metadata } =
      expiries(tokens);
    update.setOrRemove('accessTokenExpiresAt', accessTokenExpiresAt);
    update.setOrRemove('refreshTokenExpiresAt', refreshTokenExpiresAt);
    update.setOrRemove('expiryAssumed', expiryAssumed);
    update.setOrRemove('metadata', metadata);
    update.setOrRemove('dueShard', options.dueAt !== undefined ? dueShardFor(pk) : undefined);
    update.setOrRemove('dueAt', options.dueAt);
    await this.update(current.provider, current.connectionId, update, {
      version: current.version,
      ...(options.holder !== undefined ? { holder: options.holder } : {}),
    });
    return savedConnection(current, tokens, now, options.dueAt);
  }

  async recordFailure(
    current: Connection,
    holder: string,
    failure: FailureRecord,
    now: number,
  ): Promise<Connection> {
    const pk = connectionPk(current.provider, current.connectionId);
    const recorded = failedConnection(current, failure, now);
    const update = new VersionedUpdate()
      .set('lastError', recorded.lastError)
      .set('#status', recorded.status)
      .set('version', recorded.version)
      .set('updatedAt', now)
      .set('refreshFailures', recorded.refreshFailures)
      .remove('leaseHolder', 'leaseExpiresAt');
    update.setOrRemove('dueShard', recorded.dueAt !== undefined ? dueShardFor(pk) : undefined);
    update.setOrRemove('dueAt', recorded.dueAt);
    await this.update(current.provider, current.connectionId, update, {
      version: current.version,
      holder,
    });
    return recorded;
  }

  async reschedule(current: Connection, dueAt: number, now: number): Promise<void> {
    const pk = connectionPk(current.provider, current.connectionId);
    await this.update(
      current.provider,
      current.connectionId,
      new VersionedUpdate().set('dueShard', dueShardFor(pk)).set('dueAt', dueAt),
      { version: current.version, noLiveLeaseAt: now },
    );
  }

  private update(
    provider: string,
    connectionId: string,
    update: VersionedUpdate,
    condition: UpdateCondition,
  ): Promise<void> {
    return this.conditional(
      new UpdateCommand({
        TableName: this.tableName,
        Key: { pk: connectionPk(provider, connectionId) },
        ...update.build(condition),
      }),
    );
  }

  private encryptTokens(provider: string, connectionId: string, tokens: TokenSet) {
    return this.envelope.encrypt(JSON.stringify(tokens), tokensContext(provider, connectionId));
  }

  private async conditional(command: PutCommand | UpdateCommand | DeleteCommand): Promise<void> {
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
        await this.envelope.decrypt(item.tokens!, tokensContext(item.provider, item.connectionId)),
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
      status: item.status as ConnectionStatus, // an item with tokens is never pending
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
 * Expiry times kept in clear beside the ciphertext, for listing and scheduling; with them whether
 * the expiry is assumed (no expires_in came) and the connection's metadata, which is never a
 * secret (the kind keeps only the entry's declared, non-secret fields).
 */
function expiries(tokens: TokenSet): {
  accessTokenExpiresAt?: number;
  refreshTokenExpiresAt?: number;
  expiryAssumed?: true;
  metadata?: Record<string, string>;
} {
  return {
    ...(tokens.expiryAssumed ? { expiryAssumed: true as const } : {}),
    ...(tokens.metadata && Object.keys(tokens.metadata).length > 0
      ? { metadata: tokens.metadata }
      : {}),
    ...(tokens.expiresAt !== undefined ? { accessTokenExpiresAt: tokens.expiresAt } : {}),
    ...(tokens.refreshTokenExpiresAt !== undefined
      ? { refreshTokenExpiresAt: tokens.refreshTokenExpiresAt }
      : {}),
  };
}
