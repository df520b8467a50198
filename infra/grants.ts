import { Aws } from 'aws-cdk-lib';
import type { ITable } from 'aws-cdk-lib/aws-dynamodb';
import * as iam from 'aws-cdk-lib/aws-iam';
import type { IKey } from 'aws-cdk-lib/aws-kms';
import type { ISecret } from 'aws-cdk-lib/aws-secretsmanager';

/**
 * Grants as explicit statements: named actions on named resources, never `service:*` or the
 * `kms:GenerateDataKey*`-style patterns the construct `grant*` methods add.
 */

/** The item-level calls a broker function may make on the token table. */
export type TableItemAction =
  | 'dynamodb:GetItem'
  | 'dynamodb:PutItem'
  | 'dynamodb:UpdateItem'
  | 'dynamodb:DeleteItem'
  | 'dynamodb:Query';

/** What DynamoDB does with a table's customer managed key on behalf of the caller. */
const tableKeyActions = ['kms:Decrypt', 'kms:DescribeKey', 'kms:Encrypt', 'kms:GenerateDataKey'];

function addStatement(grantee: iam.IGrantable, statement: iam.PolicyStatementProps): void {
  const added = grantee.grantPrincipal.addToPrincipalPolicy(new iam.PolicyStatement(statement));
  if (!added.statementAdded)
    throw new Error(`Cannot add a policy statement to ${grantee.grantPrincipal}`);
}

/**
 * `actions` on the table, plus, when the table is encrypted with a customer managed key, what
 * DynamoDB needs of that key on the caller's behalf: only through DynamoDB (`kms:ViaService`),
 * so the function cannot use these permissions on the key directly.
 */
export function bindTable(
  grantee: iam.IGrantable,
  table: ITable,
  actions: readonly TableItemAction[],
): void {
  addStatement(grantee, { actions: [...actions], resources: [table.tableArn] });
  if (table.encryptionKey) {
    addStatement(grantee, {
      actions: tableKeyActions,
      resources: [table.encryptionKey.keyArn],
      conditions: { StringEquals: { 'kms:ViaService': `dynamodb.${Aws.REGION}.amazonaws.com` } },
    });
  }
}

/**
 * Envelope encryption (shared/crypto/kms-key-manager.ts): GenerateDataKey to wrap, Decrypt to
 * unwrap, only for data keys whose encryption context carries this `purpose`
 * (shared/store/connection-store.ts tokensContext).
 */
export function bindEnvelopeKey(grantee: iam.IGrantable, key: IKey, purpose: string): void {
  addStatement(grantee, {
    actions: ['kms:GenerateDataKey', 'kms:Decrypt'],
    resources: [key.keyArn],
    conditions: { StringEquals: { 'kms:EncryptionContext:purpose': purpose } },
  });
}

/** Read the value of these secrets, and of no other. */
export function bindSecretValues(grantee: iam.IGrantable, secrets: readonly ISecret[]): void {
  if (secrets.length === 0) return;
  addStatement(grantee, {
    actions: ['secretsmanager:GetSecretValue'],
    resources: secrets.map((secret) => secret.secretArn),
  });
}
