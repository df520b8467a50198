import type { CreateTableCommandInput } from '@aws-sdk/client-dynamodb';

/**
 * The token table's key schema, shared by the CDK stack, the offline runtime and the tests so
 * they cannot drift. One string partition key; item types are told apart by its prefix
 * (docs/architecture.md, "Table layout").
 */
export const tableKey = { partitionKey: 'pk' } as const;

/** The TTL attribute (epoch seconds) for short-lived items such as flows and sessions. */
export const ttlAttribute = 'ttl';

export function createTableInput(tableName: string): CreateTableCommandInput {
  return {
    TableName: tableName,
    AttributeDefinitions: [{ AttributeName: tableKey.partitionKey, AttributeType: 'S' }],
    KeySchema: [{ AttributeName: tableKey.partitionKey, KeyType: 'HASH' }],
    BillingMode: 'PAY_PER_REQUEST',
  };
}

export const connectionPk = (provider: string, connectionId: string) =>
  `connection#${provider}#${connectionId}`;
