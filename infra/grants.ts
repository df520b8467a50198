import { Aws } from 'aws-cdk-lib';
import type { ITable } from 'aws-cdk-lib/aws-dynamodb';
import type { IEventBus } from 'aws-cdk-lib/aws-events';
import * as iam from 'aws-cdk-lib/aws-iam';
import type { IKey } from 'aws-cdk-lib/aws-kms';
import type { ISecret } from 'aws-cdk-lib/aws-secretsmanager';

/**
 * Grants as explicit statements: named actions on named resources, never `service:*` or the
 * `kms:GenerateDataKey*`-style patterns the construct `grant*` methods add.
 */

/** The item-level calls a broker function may make on the token table. */
export type TableItemAction =
  'dynamodb:GetItem' | 'dynamodb:PutItem' | 'dynamodb:UpdateItem' | 'dynamodb:DeleteItem';

/** What a function does with the envelope key (shared/crypto/kms-key-manager.ts). */
export type EnvelopeAction = 'kms:GenerateDataKey' | 'kms:Decrypt';

/** What DynamoDB does with a table's customer managed key on behalf of the caller. */
const tableKeyActions = ['kms:Decrypt', 'kms:DescribeKey', 'kms:Encrypt', 'kms:GenerateDataKey'];

function addStatement(grantee: iam.IGrantable, statement: iam.PolicyStatementProps): void {
  const added = grantee.grantPrincipal.addToPrincipalPolicy(new iam.PolicyStatement(statement));
  if (!added.statementAdded)
    throw new Error(`Cannot add a policy statement to ${grantee.grantPrincipal}`);
}

/** Keys (prefixes, purposes) grouped by the exact action list they get: one statement per group. */
function byActionSet<A extends string>(
  grants: Partial<Record<string, readonly A[]>>,
): { actions: A[]; keys: string[] }[] {
  const groups = new Map<string, { actions: A[]; keys: string[] }>();
  for (const [key, actions] of Object.entries(grants)) {
    if (!actions || actions.length === 0) continue;
    const sorted = [...new Set(actions)].sort();
    const id = sorted.join(',');
    const group = groups.get(id) ?? { actions: sorted, keys: [] };
    group.keys.push(key);
    groups.set(id, group);
  }
  return [...groups.values()];
}

/**
 * Item calls on the table, each limited to items whose partition key starts with one of the
 * given prefixes (`dynamodb:LeadingKeys`, e.g. `{ 'connection#': ['dynamodb:GetItem'] }`). Every
 * action allowed here names the item's key, so the condition always has a value to check.
 */
export function bindTableItems(
  grantee: iam.IGrantable,
  table: ITable,
  byPrefix: Partial<Record<string, readonly TableItemAction[]>>,
): void {
  for (const { actions, keys } of byActionSet(byPrefix)) {
    addStatement(grantee, {
      actions,
      resources: [table.tableArn],
      conditions: {
        'ForAllValues:StringLike': { 'dynamodb:LeadingKeys': keys.map((prefix) => `${prefix}*`) },
      },
    });
  }
}

/**
 * Query on these global secondary indexes (their ARNs only; a table grant does not cover them).
 * What a query can read is what the index projects (shared/store/table.ts).
 */
export function bindIndexQueries(
  grantee: iam.IGrantable,
  table: ITable,
  indexNames: readonly string[],
): void {
  if (indexNames.length === 0) return;
  addStatement(grantee, {
    actions: ['dynamodb:Query'],
    resources: indexNames.map((name) => `${table.tableArn}/index/${name}`),
  });
}

/**
 * What DynamoDB needs of the table's customer managed key on the caller's behalf: only through
 * DynamoDB (`kms:ViaService`), so the function cannot use these permissions on the key directly.
 */
export function bindTableKeyAtRest(grantee: iam.IGrantable, table: ITable): void {
  if (!table.encryptionKey) return;
  addStatement(grantee, {
    actions: tableKeyActions,
    resources: [table.encryptionKey.keyArn],
    conditions: { StringEquals: { 'kms:ViaService': `dynamodb.${Aws.REGION}.amazonaws.com` } },
  });
}

/**
 * Envelope encryption (shared/crypto/kms-key-manager.ts): GenerateDataKey to wrap, Decrypt to
 * unwrap, each only for data keys whose encryption context carries one of the given `purpose`s
 * (e.g. `{ 'connection-tokens': ['kms:GenerateDataKey', 'kms:Decrypt'] }`).
 */
export function bindEnvelopeKey(
  grantee: iam.IGrantable,
  key: IKey,
  byPurpose: Partial<Record<string, readonly EnvelopeAction[]>>,
): void {
  for (const { actions, keys } of byActionSet(byPurpose)) {
    addStatement(grantee, {
      actions,
      resources: [key.keyArn],
      conditions: {
        StringEquals: { 'kms:EncryptionContext:purpose': keys.length === 1 ? keys[0] : keys },
      },
    });
  }
}

/** Read the value of these secrets, and of no other. */
export function bindSecretValues(grantee: iam.IGrantable, secrets: readonly ISecret[]): void {
  if (secrets.length === 0) return;
  addStatement(grantee, {
    actions: ['secretsmanager:GetSecretValue'],
    resources: secrets.map((secret) => secret.secretArn),
  });
}

/** PutEvents on this bus only, and only with this `source` (shared/events.ts). */
export function bindPutEvents(grantee: iam.IGrantable, bus: IEventBus, source: string): void {
  addStatement(grantee, {
    actions: ['events:PutEvents'],
    resources: [bus.eventBusArn],
    conditions: { StringEquals: { 'events:source': source } },
  });
}

/**
 * The key-policy side of bindEnvelopeKey: the same actions and purposes, for this role by name.
 * The key policy holds no statement for the account that covers these actions, so only the roles
 * named here may wrap or unwrap envelopes, whatever an identity policy elsewhere says.
 */
export function envelopeKeyPolicy(
  role: iam.IRole,
  byPurpose: Partial<Record<string, readonly EnvelopeAction[]>>,
): iam.PolicyStatement[] {
  return byActionSet(byPurpose).map(
    ({ actions, keys }) =>
      new iam.PolicyStatement({
        principals: [role],
        actions,
        resources: ['*'],
        conditions: {
          StringEquals: { 'kms:EncryptionContext:purpose': keys.length === 1 ? keys[0] : keys },
        },
      }),
  );
}

/**
 * The table's encryption at rest: the account's principals may have DynamoDB use the key for
 * them (`kms:ViaService`), as DynamoDB's customer managed keys require; their identity policies
 * decide who (bindTableKeyAtRest for the broker's roles, the deploying role for CreateGrant).
 * Nobody gets direct use of the key from this.
 */
export function tableKeyPolicy(): iam.PolicyStatement {
  return new iam.PolicyStatement({
    sid: 'TokenTableAtRestThroughDynamoDB',
    principals: [new iam.AccountRootPrincipal()],
    actions: [...tableKeyActions, 'kms:CreateGrant'].sort(),
    resources: ['*'],
    conditions: {
      StringEquals: {
        'kms:ViaService': `dynamodb.${Aws.REGION}.amazonaws.com`,
        'kms:CallerAccount': Aws.ACCOUNT_ID,
      },
    },
  });
}
