import { GetCommand, QueryCommand, type DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { InvalidRequestError } from '../errors.ts';
import type { ConnectionError, ConnectionStatus } from './connection-store.ts';
import { deleteIfExists } from './conditional.ts';
import { connectionPk, providerIndex } from './table.ts';
import { connectionIdPattern } from '../token-request.ts';

/** What callers may know of a connection: status and times, never a token. */
export interface ConnectionSummary {
  provider: string;
  connectionId: string;
  status: ConnectionStatus;
  /** ISO 8601, or null when the access token does not expire. */
  accessTokenExpiresAt: string | null;
  refreshTokenExpiresAt: string | null;
  /**
   * True when the provider gave no lifetime and the expiry is the entry's
   * defaultExpiresInSeconds: the token may stop working earlier (renew with forceRefresh).
   */
  expiryAssumed: boolean;
  /** Non-secret facts kept from the token answer or callback (the entry's `metadata`). */
  metadata: Record<string, string>;
  createdAt: string;
  updatedAt: string;
  lastRefreshedAt: string | null;
  lastError: { code: string; message: string; at: string } | null;
  /** When the refresher will next renew it; null when it is not scheduled. */
  nextRefreshAt: string | null;
}

interface SummaryItem {
  provider: string;
  connectionId: string;
  status: ConnectionStatus | 'pending';
  version: number;
  accessTokenExpiresAt?: number;
  refreshTokenExpiresAt?: number;
  expiryAssumed?: boolean;
  metadata?: Record<string, string>;
  createdAt: number;
  updatedAt: number;
  lastRefreshedAt?: number;
  lastError?: ConnectionError;
  dueAt?: number;
}

export interface SummaryPage {
  connections: ConnectionSummary[];
  /** Opaque cursor for the next page; absent after the last. */
  nextCursor?: string;
}

/**
 * Reads and deletes connections without touching their tokens: summaries come from clear
 * attributes (never the ciphertext), listing queries the by-provider index (never a Scan), and
 * delete removes the item with its ciphertext.
 */
export class ConnectionDirectory {
  constructor(
    private readonly db: DynamoDBDocumentClient,
    private readonly tableName: string,
  ) {}

  async get(provider: string, connectionId: string): Promise<ConnectionSummary | undefined> {
    const out = await this.db.send(
      new GetCommand({
        TableName: this.tableName,
        Key: { pk: connectionPk(provider, connectionId) },
        ProjectionExpression: projection.expression,
        ExpressionAttributeNames: projection.names,
        ConsistentRead: true,
      }),
    );
    const item = out.Item as SummaryItem | undefined;
    return item && isConnection(item) ? toSummary(item) : undefined;
  }

  /** The item's version, read without its tokens; undefined when there is no such connection. */
  async versionOf(provider: string, connectionId: string): Promise<number | undefined> {
    const out = await this.db.send(
      new GetCommand({
        TableName: this.tableName,
        Key: { pk: connectionPk(provider, connectionId) },
        ProjectionExpression: 'version',
        ConsistentRead: true,
      }),
    );
    return (out.Item as { version?: number } | undefined)?.version;
  }

  async list(provider: string, options: { limit?: number; cursor?: string }): Promise<SummaryPage> {
    const out = await this.db.send(
      new QueryCommand({
        TableName: this.tableName,
        IndexName: providerIndex.name,
        KeyConditionExpression: '#provider = :provider',
        ExpressionAttributeNames: { '#provider': providerIndex.partitionKey },
        ExpressionAttributeValues: { ':provider': provider },
        Limit: options.limit ?? 50,
        ...(options.cursor ? { ExclusiveStartKey: decodeCursor(options.cursor, provider) } : {}),
      }),
    );
    return {
      connections: ((out.Items ?? []) as SummaryItem[]).filter(isConnection).map(toSummary),
      ...(out.LastEvaluatedKey ? { nextCursor: encodeCursor(out.LastEvaluatedKey) } : {}),
    };
  }

  /** Removes the connection (and so its only ciphertext); false if there was none. */
  async delete(provider: string, connectionId: string): Promise<boolean> {
    return deleteIfExists(this.db, this.tableName, connectionPk(provider, connectionId));
  }
}

const projectedNames = ['provider', 'connectionId', ...providerIndex.projectedAttributes];
const projection = {
  expression: projectedNames.map((_, i) => `#a${i}`).join(', '),
  names: Object.fromEntries(projectedNames.map((name, i) => [`#a${i}`, name])),
};

/**
 * A `pending` item is a first mint's claim (the refresh protocol's, under way for a few seconds
 * at most): no connection exists until its tokens are stored, so callers do not see it.
 */
const isConnection = (item: SummaryItem): item is SummaryItem & { status: ConnectionStatus } =>
  item.status !== 'pending';

const iso = (ms: number | undefined) => (ms === undefined ? null : new Date(ms).toISOString());

function toSummary(item: SummaryItem & { status: ConnectionStatus }): ConnectionSummary {
  return {
    provider: item.provider,
    connectionId: item.connectionId,
    status: item.status,
    accessTokenExpiresAt: iso(item.accessTokenExpiresAt),
    refreshTokenExpiresAt: iso(item.refreshTokenExpiresAt),
    expiryAssumed: item.expiryAssumed === true,
    metadata: item.metadata ?? {},
    createdAt: new Date(item.createdAt).toISOString(),
    updatedAt: new Date(item.updatedAt).toISOString(),
    lastRefreshedAt: iso(item.lastRefreshedAt),
    lastError: item.lastError
      ? {
          code: item.lastError.code,
          message: item.lastError.message,
          at: new Date(item.lastError.at).toISOString(),
        }
      : null,
    nextRefreshAt: iso(item.dueAt),
  };
}

function encodeCursor(key: Record<string, unknown>): string {
  return Buffer.from(JSON.stringify(key)).toString('base64url');
}

/**
 * A cursor is only ever a key of this provider's index partition: exactly `pk`, `provider` and
 * `connectionId`, with a connection id the API accepts and the `pk` that id has. Anything else is
 * refused here, before DynamoDB sees it (an empty or oversized key would be its ValidationException).
 */
function decodeCursor(cursor: string, provider: string): Record<string, unknown> {
  let key: unknown;
  try {
    key = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch {
    key = undefined;
  }
  const record = key as Record<string, unknown> | undefined;
  if (
    !record ||
    typeof record !== 'object' ||
    Array.isArray(record) ||
    Object.keys(record).length !== 3 ||
    record.provider !== provider ||
    typeof record.connectionId !== 'string' ||
    !new RegExp(connectionIdPattern).test(record.connectionId) ||
    record.pk !== connectionPk(provider, record.connectionId)
  ) {
    throw new InvalidRequestError('Invalid request: cursor: not one this listing returned.');
  }
  return { pk: record.pk, provider: record.provider, connectionId: record.connectionId };
}
