import { ConditionalCheckFailedException } from '@aws-sdk/client-dynamodb';
import { DeleteCommand, type DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';

/** Whether a write was refused by its condition (the SDK class, or its name across SDK copies). */
export function isConditionalCheckFailed(error: unknown): boolean {
  return (
    error instanceof ConditionalCheckFailedException ||
    (error as Error | undefined)?.name === 'ConditionalCheckFailedException'
  );
}

/**
 * Deletes the item only if it exists: true for the one caller that removed it, false for everyone
 * after (single-use sessions and flows, a disconnect).
 */
export async function deleteIfExists(
  db: DynamoDBDocumentClient,
  tableName: string,
  pk: string,
): Promise<boolean> {
  try {
    await db.send(
      new DeleteCommand({
        TableName: tableName,
        Key: { pk },
        ConditionExpression: 'attribute_exists(pk)',
      }),
    );
    return true;
  } catch (error) {
    if (isConditionalCheckFailed(error)) return false;
    throw error;
  }
}
