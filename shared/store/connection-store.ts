import { ConditionalCheckFailedException } from '@aws-sdk/client-dynamodb';
import {
  GetCommand,
  PutCommand,
  UpdateCommand,
  type DynamoDBDocumentClient,
} from '@aws-sdk/lib-dynamodb';
import type { Envelope } from '../crypto/envelope.ts';
import { BrokerError, VersionConflictError } from '../errors.ts';
import type { TokenSet } from '../providers/types.ts';
import { connectionPk } from './table.ts';

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
  leaseHolder?: string;
  leaseExpiresAt?: number;
}

/** Binds a tokens ciphertext to its connection: copied onto another item, it will not decrypt. */
export function tokensContext(provider: string, connectionId: string) {
  return { purpose: 'connection-tokens', provider, connectionId };
}

/**
 * Connections in the DynamoDB token table (the same adapter serves AWS, moto and the embedded
 * store). Reads are strongly consistent: refresh decisions must see the latest refresh token.
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

  /** Creates a connection; VersionConflictError if one already exists. */
  async create(
    provider: string,
    connectionId: string,
    tokens: TokenSet,
    now: number,
  ): Promise<Connection> {
    const item: ConnectionItem = {
      pk: connectionPk(provider, connectionId),
      type: 'connection',
      provider,
      connectionId,
      status: 'active',
      version: 1,
      tokens: await this.envelope.encrypt(
        JSON.stringify(tokens),
        tokensContext(provider, connectionId),
      ),
      ...expiries(tokens),
      createdAt: now,
      updatedAt: now,
      lastRefreshedAt: now,
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
   * Writes renewed tokens and releases the lease. Fenced: the write happens only while the item is
   * at the version we read *and* (when `holder` is given) still leased to us, so a holder whose
   * lease lapsed can never overwrite a newer write.
   */
  async saveTokens(
    current: Connection,
    tokens: TokenSet,
    now: number,
    holder?: string,
  ): Promise<Connection> {
    const ciphertext = await this.envelope.encrypt(
      JSON.stringify(tokens),
      tokensContext(current.provider, current.connectionId),
    );
    const { accessTokenExpiresAt, refreshTokenExpiresAt } = expiries(tokens);
    const set = [
      'tokens = :tokens',
      '#status = :active',
      'version = :next',
      'updatedAt = :now',
      'lastRefreshedAt = :now',
    ];
    const remove = ['leaseHolder', 'leaseExpiresAt', 'lastError'];
    const values: Record<string, unknown> = {
      ':tokens': ciphertext,
      ':active': 'active',
      ':next': current.version + 1,
      ':now': now,
      ':version': current.version,
    };
    for (const [name, value] of Object.entries({ accessTokenExpiresAt, refreshTokenExpiresAt })) {
      if (value === undefined) remove.push(name);
      else {
        set.push(`${name} = :${name}`);
        values[`:${name}`] = value;
      }
    }
    if (holder) values[':holder'] = holder;
    await this.conditional(
      new UpdateCommand({
        TableName: this.tableName,
        Key: { pk: connectionPk(current.provider, current.connectionId) },
        UpdateExpression: `SET ${set.join(', ')} REMOVE ${remove.join(', ')}`,
        ConditionExpression: holder
          ? 'version = :version AND leaseHolder = :holder'
          : 'version = :version',
        ExpressionAttributeNames: { '#status': 'status' },
        ExpressionAttributeValues: values,
      }),
    );
    const { lease: _lease, lastError: _lastError, ...rest } = current;
    return {
      ...rest,
      status: 'active',
      version: current.version + 1,
      tokens,
      updatedAt: now,
      lastRefreshedAt: now,
    };
  }

  /**
   * Records a failed renewal and releases our lease; `needsReauth` takes the connection out of
   * service until a person consents again. The stored tokens are left as they were.
   */
  async recordFailure(
    current: Connection,
    holder: string,
    error: { code: string; message: string },
    now: number,
    needsReauth: boolean,
  ): Promise<Connection> {
    const lastError = { code: error.code, message: error.message, at: now };
    const status: ConnectionStatus = needsReauth ? 'needs_reauth' : current.status;
    await this.conditional(
      new UpdateCommand({
        TableName: this.tableName,
        Key: { pk: connectionPk(current.provider, current.connectionId) },
        UpdateExpression:
          'SET lastError = :error, #status = :status, version = :next, updatedAt = :now REMOVE leaseHolder, leaseExpiresAt',
        ConditionExpression: 'version = :version AND leaseHolder = :holder',
        ExpressionAttributeNames: { '#status': 'status' },
        ExpressionAttributeValues: {
          ':error': lastError,
          ':status': status,
          ':next': current.version + 1,
          ':now': now,
          ':version': current.version,
          ':holder': holder,
        },
      }),
    );
    const { lease: _lease, ...rest } = current;
    return { ...rest, status, lastError, version: current.version + 1, updatedAt: now };
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

  private async conditional(command: PutCommand | UpdateCommand): Promise<void> {
    try {
      await this.db.send(command as UpdateCommand);
    } catch (error) {
      if (
        error instanceof ConditionalCheckFailedException ||
        (error as Error).name === 'ConditionalCheckFailedException'
      ) {
        throw new VersionConflictError();
      }
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
      ...(item.lastRefreshedAt !== undefined ? { lastRefreshedAt: item.lastRefreshedAt } : {}),
      ...(item.lastError ? { lastError: item.lastError } : {}),
      ...(item.leaseHolder && item.leaseExpiresAt !== undefined
        ? { lease: { holder: item.leaseHolder, expiresAt: item.leaseExpiresAt } }
        : {}),
    };
  }
}

/** Expiry times kept in clear beside the ciphertext, for listing and (later) the due index. */
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
