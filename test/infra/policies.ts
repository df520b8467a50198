import { expect } from 'vitest';
import type { Template } from 'aws-cdk-lib/assertions';
import { resourcesOfType } from './synth.ts';

export interface Statement {
  Effect: string;
  Action: string | string[];
  Resource: unknown;
  Condition?: Record<string, Record<string, unknown>>;
}

interface PolicyDocument {
  Statement: Statement[];
}

export const actionsOf = (statement: Statement): string[] =>
  Array.isArray(statement.Action) ? statement.Action : [statement.Action];

export const refersTo = (value: unknown, logicalId: string): boolean =>
  JSON.stringify(value).includes(`"${logicalId}"`);

/** Every statement of every identity policy in the template (inline, attached or managed). */
export function identityStatements(template: Template): Statement[] {
  const documents: PolicyDocument[] = [];
  for (const type of ['AWS::IAM::Policy', 'AWS::IAM::ManagedPolicy']) {
    for (const policy of Object.values(resourcesOfType(template, type))) {
      documents.push((policy.Properties as { PolicyDocument: PolicyDocument }).PolicyDocument);
    }
  }
  for (const role of Object.values(resourcesOfType(template, 'AWS::IAM::Role'))) {
    const inline = (role.Properties as { Policies?: { PolicyDocument: PolicyDocument }[] })
      .Policies;
    for (const policy of inline ?? []) documents.push(policy.PolicyDocument);
  }
  return documents.flatMap((document) => document.Statement);
}

/** The statements of the identity policies attached to one role (by logical id). */
export function roleStatements(template: Template, roleId: string): Statement[] {
  const statements: Statement[] = [];
  for (const policy of Object.values(resourcesOfType(template, 'AWS::IAM::Policy'))) {
    const properties = policy.Properties as { Roles: unknown[]; PolicyDocument: PolicyDocument };
    if (properties.Roles.some((role) => refersTo(role, roleId))) {
      statements.push(...properties.PolicyDocument.Statement);
    }
  }
  const role = template.toJSON().Resources[roleId] as {
    Properties: { Policies?: { PolicyDocument: PolicyDocument }[]; ManagedPolicyArns?: unknown };
  };
  for (const policy of role.Properties.Policies ?? []) {
    statements.push(...policy.PolicyDocument.Statement);
  }
  return statements;
}

/** A `Fn::Join` resolved with `standIn` for each intrinsic, e.g. the API's endpoint. */
export function joined(value: unknown, standIn: string): string {
  if (typeof value === 'string') return value;
  if (!(value as Record<string, unknown>)['Fn::Join']) return standIn;
  const [, parts] = (value as { 'Fn::Join': [string, unknown[]] })['Fn::Join'];
  return parts.map((part) => (typeof part === 'string' ? part : standIn)).join('');
}

/** What one role may do, in the terms of infra/functions.ts, plus anything unexplained. */
export interface AccessSummary {
  /** Partition-key pattern → actions (sorted). */
  items: Record<string, string[]>;
  /** Index names it may Query. */
  queries: string[];
  /** The table's key through DynamoDB (kms:ViaService), for encryption at rest. */
  keyAtRest: boolean;
  /** Envelope purpose → direct key actions (sorted). */
  envelope: Record<string, string[]>;
  /** Logical ids of the secrets it may read. */
  secrets: string[];
  /** PutEvents: the bus's logical id and the source it is limited to. */
  putEvents?: { bus: string; source: unknown };
  /** X-Ray: sending its trace segments (no resource-level permissions exist for these). */
  tracing: boolean;
  /** Statements none of the above explains (its own log group, a dead-letter queue…). */
  other: Statement[];
}

const sorted = (values: string[]) => [...values].sort();

/** Reads a role's statements back into an AccessSummary; every statement lands somewhere. */
export function summarizeAccess(
  statements: Statement[],
  ids: { table: string; key: string; bus: string },
): AccessSummary {
  const summary: AccessSummary = {
    items: {},
    queries: [],
    keyAtRest: false,
    envelope: {},
    secrets: [],
    tracing: false,
    other: [],
  };
  for (const statement of statements) {
    const actions = actionsOf(statement);
    const text = JSON.stringify(statement.Resource);
    expect(statement.Effect).toBe('Allow');
    if (actions.every((a) => a.startsWith('dynamodb:')) && text.includes('/index/')) {
      expect(actions).toEqual(['dynamodb:Query']);
      const resources = Array.isArray(statement.Resource)
        ? statement.Resource
        : [statement.Resource];
      for (const resource of resources) {
        expect(refersTo(resource, ids.table)).toBe(true);
        summary.queries.push(joined(resource, 'TABLE').replace('TABLE/index/', ''));
      }
    } else if (actions.every((a) => a.startsWith('dynamodb:'))) {
      expect(statement.Resource).toEqual({ 'Fn::GetAtt': [ids.table, 'Arn'] });
      const patterns = statement.Condition?.['ForAllValues:StringLike']?.['dynamodb:LeadingKeys'];
      expect(Object.keys(statement.Condition ?? {})).toEqual(['ForAllValues:StringLike']);
      expect(Array.isArray(patterns)).toBe(true);
      for (const pattern of patterns as string[]) {
        summary.items[pattern] = sorted([...(summary.items[pattern] ?? []), ...actions]);
      }
    } else if (actions.every((a) => a.startsWith('kms:'))) {
      expect(statement.Resource).toEqual({ 'Fn::GetAtt': [ids.key, 'Arn'] });
      const via = statement.Condition?.StringEquals?.['kms:ViaService'];
      const purposes = statement.Condition?.StringEquals?.['kms:EncryptionContext:purpose'];
      expect(Object.keys(statement.Condition ?? {})).toEqual(['StringEquals']);
      if (via) {
        expect(joined(via, 'REGION')).toBe('dynamodb.REGION.amazonaws.com');
        summary.keyAtRest = true;
      } else {
        expect(purposes).toBeDefined();
        for (const purpose of [purposes].flat() as string[]) {
          summary.envelope[purpose] = sorted([...(summary.envelope[purpose] ?? []), ...actions]);
        }
      }
    } else if (actions.every((a) => a.startsWith('secretsmanager:'))) {
      expect(actions).toEqual(['secretsmanager:GetSecretValue']);
      const resources = [statement.Resource].flat() as { Ref: string }[];
      summary.secrets.push(...resources.map((resource) => resource.Ref));
    } else if (actions.includes('events:PutEvents')) {
      expect(actions).toEqual(['events:PutEvents']);
      expect(statement.Resource).toEqual({ 'Fn::GetAtt': [ids.bus, 'Arn'] });
      summary.putEvents = {
        bus: ids.bus,
        source: statement.Condition?.StringEquals?.['events:source'],
      };
    } else if (actions.every((a) => a.startsWith('xray:'))) {
      expect(actions).toEqual(['xray:PutTelemetryRecords', 'xray:PutTraceSegments']);
      expect(statement.Resource).toBe('*');
      summary.tracing = true;
    } else {
      summary.other.push(statement);
    }
  }
  summary.queries.sort();
  summary.secrets.sort();
  return summary;
}
