import { GetCommand, PutCommand, type DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import type { Envelope } from '../crypto/envelope.ts';
import type { SealedCache } from '../providers/types.ts';
import { providerCachePk, ttlAttribute } from './table.ts';

/**
 * A provider-wide cache in the token table whose values are envelope-encrypted, bound to the
 * provider and entry name (e.g. a kind's API-user token, shared by every container). Expired
 * entries read as absent; the table's TTL removes them later.
 */
export class DynamoSealedCache implements SealedCache {
  constructor(
    private readonly db: DynamoDBDocumentClient,
    private readonly tableName: string,
    private readonly envelope: Envelope,
    private readonly provider: string,
    private readonly now: () => number,
  ) {}

  async get(name: string): Promise<string | undefined> {
    const out = await this.db.send(
      new GetCommand({
        TableName: this.tableName,
        Key: { pk: this.pk(name) },
        ConsistentRead: true,
      }),
    );
    const item = out.Item as { value: string; expiresAt: number } | undefined;
    if (!item || item.expiresAt <= this.now()) return undefined;
    return this.envelope.decrypt(item.value, this.context(name));
  }

  async put(name: string, value: string, expiresAt: number): Promise<void> {
    await this.db.send(
      new PutCommand({
        TableName: this.tableName,
        Item: {
          pk: this.pk(name),
          type: 'provider-cache',
          value: await this.envelope.encrypt(value, this.context(name)),
          expiresAt,
          [ttlAttribute]: Math.ceil(expiresAt / 1000),
        },
      }),
    );
  }

  private pk(name: string): string {
    return providerCachePk(this.provider, name);
  }

  private context(name: string) {
    return { purpose: 'provider-cache', provider: this.provider, name };
  }
}
