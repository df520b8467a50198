import { createHash } from 'node:crypto';
import type { CreateTableCommandInput } from '@aws-sdk/client-dynamodb';

/**
 * The token table's key schema, shared by the CDK stack, the offline runtime and the tests so
 * they cannot drift. One string partition key; item types are told apart by its prefix
 * (docs/architecture.md, "Table layout").
 */
export const tableKey = { partitionKey: 'pk' } as const;

/** The TTL attribute (epoch seconds) for short-lived items such as flows and sessions. */
export const ttlAttribute = 'ttl';

/**
 * The due index: a sparse GSI holding only connections the refresher should renew, keyed by a
 * shard (`due#0` … `due#7`) and the time the connection falls due (epoch ms). Sharding spreads
 * the index over several partitions so one cannot cap the refresher's throughput; the refresher
 * queries every shard. Projection ALL, so a refresher run reads each due item once.
 */
export const dueIndex = {
  name: 'due',
  partitionKey: 'dueShard',
  sortKey: 'dueAt',
  shards: 8,
} as const;

/**
 * Connections by provider, for listing without a Scan. Sparse by construction: only connection
 * items carry both `provider` and `connectionId`. The projection leaves the tokens ciphertext out,
 * so listing never reads (or could leak) a token.
 */
export const providerIndex = {
  name: 'by-provider',
  partitionKey: 'provider',
  sortKey: 'connectionId',
  projectedAttributes: [
    'status',
    'version',
    'accessTokenExpiresAt',
    'refreshTokenExpiresAt',
    'expiryAssumed',
    'metadata',
    'createdAt',
    'updatedAt',
    'lastRefreshedAt',
    'lastError',
    'refreshFailures',
    'dueAt',
  ],
} as const;

export function dueShardFor(pk: string): string {
  return `due#${createHash('sha256').update(pk).digest().readUInt32BE(0) % dueIndex.shards}`;
}

export const allDueShards = (): string[] =>
  Array.from({ length: dueIndex.shards }, (_, shard) => `due#${shard}`);

export function createTableInput(tableName: string): CreateTableCommandInput {
  return {
    TableName: tableName,
    AttributeDefinitions: [
      { AttributeName: tableKey.partitionKey, AttributeType: 'S' },
      { AttributeName: dueIndex.partitionKey, AttributeType: 'S' },
      { AttributeName: dueIndex.sortKey, AttributeType: 'N' },
      { AttributeName: providerIndex.partitionKey, AttributeType: 'S' },
      { AttributeName: providerIndex.sortKey, AttributeType: 'S' },
    ],
    KeySchema: [{ AttributeName: tableKey.partitionKey, KeyType: 'HASH' }],
    GlobalSecondaryIndexes: [
      {
        IndexName: dueIndex.name,
        KeySchema: [
          { AttributeName: dueIndex.partitionKey, KeyType: 'HASH' },
          { AttributeName: dueIndex.sortKey, KeyType: 'RANGE' },
        ],
        Projection: { ProjectionType: 'ALL' },
      },
      {
        IndexName: providerIndex.name,
        KeySchema: [
          { AttributeName: providerIndex.partitionKey, KeyType: 'HASH' },
          { AttributeName: providerIndex.sortKey, KeyType: 'RANGE' },
        ],
        Projection: {
          ProjectionType: 'INCLUDE',
          NonKeyAttributes: [...providerIndex.projectedAttributes],
        },
      },
    ],
    BillingMode: 'PAY_PER_REQUEST',
  };
}

/**
 * Partition-key prefixes of the table's item types (docs/architecture.md, "Table layout"): the
 * keys below are built from them, and the IAM grants are scoped by them (`dynamodb:LeadingKeys`).
 */
export const itemPrefixes = {
  connection: 'connection#',
  session: 'session#',
  flow: 'flow#',
  /** Provider-wide encrypted cache entries (shared/store/sealed-cache.ts): a kind's API session. */
  providerCache: 'cache#',
} as const;

export const connectionPk = (provider: string, connectionId: string) =>
  `${itemPrefixes.connection}${provider}#${connectionId}`;

export const connectSessionPk = (tokenHash: string) => `${itemPrefixes.session}${tokenHash}`;
export const connectFlowPk = (handleHash: string) => `${itemPrefixes.flow}${handleHash}`;
export const providerCachePk = (provider: string, name: string) =>
  `${itemPrefixes.providerCache}${provider}#${name}`;
