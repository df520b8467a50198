import { readdirSync } from 'node:fs';
import type { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { Annotations, Match, type Template } from 'aws-cdk-lib/assertions';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { refresherTimeoutSeconds } from '../../shared/refresher.ts';
import { envelopePurposes } from '../../infra/functions.ts';
import { localRoutes } from '../../infra/local/local-broker.ts';
import { refresherSummaryMessage } from '../../infra/monitoring.ts';
import { loadConfig, parseConfig, type BrokerConfig } from '../../shared/config.ts';
import { FlowStore } from '../../shared/connect/flow-store.ts';
import { Envelope } from '../../shared/crypto/envelope.ts';
import type { KeyManager } from '../../shared/crypto/key-manager.ts';
import { protocolOf } from '../../shared/providers/protocols.ts';
import { hasConsentFlow } from '../../shared/providers/types.ts';
import { DynamoConnectionStore } from '../../shared/store/dynamo-connection-store.ts';
import { DynamoSealedCache } from '../../shared/store/sealed-cache.ts';
import {
  connectionPk,
  connectFlowPk,
  connectSessionPk,
  createTableInput,
  itemPrefixes,
  providerIndex,
} from '../../shared/store/table.ts';
import {
  actionsOf,
  identityStatements,
  joined,
  refersTo,
  roleStatements,
  summarizeAccess,
  type AccessSummary,
} from './policies.ts';
import {
  removeSynthOutputs,
  resourcesOfType,
  synthBroker,
  type Resource,
  type SynthesizedBroker,
} from './synth.ts';

afterAll(removeSynthOutputs);

const functionNames = [
  'token',
  'connections',
  'connect-start',
  'connect-callback',
  'refresher',
] as const;
type FunctionName = (typeof functionNames)[number];

/** Provider ids of the configuration whose kind has a consent flow (never by kind name). */
const consentProviders = (config: BrokerConfig) =>
  Object.entries(config.providers)
    .filter(([, provider]) => hasConsentFlow(protocolOf(provider)))
    .map(([id]) => id);

function environmentOf(fn: Resource): Record<string, unknown> {
  return (
    (fn.Properties as { Environment?: { Variables?: Record<string, unknown> } }).Environment
      ?.Variables ?? {}
  );
}

describe('BrokerStack (stage prod)', () => {
  let prod: SynthesizedBroker;
  let template: Template;
  let resources: Record<string, Resource>;
  let config: BrokerConfig;
  let keyId: string;
  let tableId: string;
  let busId: string;
  let queueId: string;
  let topicId: string;
  /** Logical ids of the functions, by short name. */
  const fnIds = {} as Record<FunctionName, string>;
  /** Logical ids of the provider secrets, by provider id. */
  const secretIds: Record<string, string> = {};

  beforeAll(() => {
    config = loadConfig();
    // Template only: the nag test synthesizes with the real bundles.
    prod = synthBroker({ stage: 'prod' }, { bundle: false });
    template = prod.template;
    resources = template.toJSON().Resources as Record<string, Resource>;
    const { stack } = prod;
    const { broker } = stack;
    const id = (construct: { node: { defaultChild?: unknown } }) =>
      stack.getLogicalId(construct.node.defaultChild as never);
    keyId = id(broker.key);
    tableId = id(broker.table);
    busId = id(broker.eventBus);
    queueId = id(broker.refresherDeadLetterQueue);
    topicId = id(broker.monitoring.topic);
    for (const [logicalId, fn] of Object.entries(
      resourcesOfType(template, 'AWS::Lambda::Function'),
    )) {
      const name = String((fn.Properties as { FunctionName: string }).FunctionName);
      fnIds[name.replace('oauth-token-broker-prod-', '') as FunctionName] = logicalId;
    }
    for (const [logicalId, secret] of Object.entries(
      resourcesOfType(template, 'AWS::SecretsManager::Secret'),
    )) {
      const name = String((secret.Properties as { Name: string }).Name);
      secretIds[name.replace(`${config.secretsPrefix}/`, '')] = logicalId;
    }
  });

  const fn = (name: FunctionName) => resources[fnIds[name]]!;

  describe('table and key', () => {
    it('encrypts the token table with the customer managed key, with PITR and TTL on', () => {
      template.hasResourceProperties('AWS::DynamoDB::Table', {
        KeySchema: [{ AttributeName: 'pk', KeyType: 'HASH' }],
        BillingMode: 'PAY_PER_REQUEST',
        SSESpecification: {
          SSEEnabled: true,
          SSEType: 'KMS',
          KMSMasterKeyId: { 'Fn::GetAtt': [keyId, 'Arn'] },
        },
        PointInTimeRecoverySpecification: { PointInTimeRecoveryEnabled: true },
        TimeToLiveSpecification: { AttributeName: 'ttl', Enabled: true },
      });
    });

    it('defines the same indexes as createTableInput (the offline runtime’s table)', () => {
      const table = resources[tableId]!.Properties as {
        AttributeDefinitions: { AttributeName: string }[];
        GlobalSecondaryIndexes: { IndexName: string }[];
      };
      const expected = createTableInput('any');
      const byName = <T>(items: T[], key: keyof T) =>
        [...items].sort((a, b) => String(a[key]).localeCompare(String(b[key])));
      expect(byName(table.AttributeDefinitions, 'AttributeName')).toEqual(
        byName(expected.AttributeDefinitions!, 'AttributeName'),
      );
      expect(byName(table.GlobalSecondaryIndexes, 'IndexName')).toEqual(
        byName(expected.GlobalSecondaryIndexes!, 'IndexName'),
      );
    });

    it('keeps tokens out of every index but the refresher’s due index', () => {
      const indexes = (
        resources[tableId]!.Properties as {
          GlobalSecondaryIndexes: {
            IndexName: string;
            Projection: { ProjectionType: string; NonKeyAttributes?: string[] };
          }[];
        }
      ).GlobalSecondaryIndexes;
      const carryingTokens = indexes
        .filter(
          ({ Projection }) =>
            Projection.ProjectionType === 'ALL' ||
            (Projection.NonKeyAttributes ?? []).includes('tokens'),
        )
        .map((index) => index.IndexName);
      // `due` projects ALL so a refresher run reads each due connection once; only the refresher
      // may query it (below). The listing index never holds a ciphertext.
      expect(carryingTokens).toEqual(['due']);
      expect(indexes.find((i) => i.IndexName === providerIndex.name)?.Projection).toEqual({
        ProjectionType: 'INCLUDE',
        NonKeyAttributes: [...providerIndex.projectedAttributes],
      });
    });

    it('keeps the table and key when the stack lets go of them, and protects the table', () => {
      template.hasResource('AWS::DynamoDB::Table', {
        DeletionPolicy: 'Retain',
        UpdateReplacePolicy: 'Retain',
        Properties: Match.objectLike({ DeletionProtectionEnabled: true }),
      });
      expect(resources[keyId]).toMatchObject({ DeletionPolicy: 'Retain' });
    });

    it('rotates the key and names it after the stage', () => {
      expect(resources[keyId]!.Properties).toMatchObject({ EnableKeyRotation: true });
      template.hasResourceProperties('AWS::KMS::Alias', {
        AliasName: 'alias/oauth-token-broker-prod',
        TargetKeyId: { 'Fn::GetAtt': [keyId, 'Arn'] },
      });
    });
  });

  describe('IAM', () => {
    const access = (name: FunctionName): AccessSummary => {
      const roleId = (fn(name).Properties as { Role: { 'Fn::GetAtt': [string, string] } }).Role[
        'Fn::GetAtt'
      ][0];
      return summarizeAccess(roleStatements(template, roleId), {
        table: tableId,
        key: keyId,
        bus: busId,
      });
    };
    const getPutUpdate = ['dynamodb:GetItem', 'dynamodb:PutItem', 'dynamodb:UpdateItem'];
    // The sealed cache: read and write; nothing deletes an entry (the table's TTL does).
    const cacheItems = ['dynamodb:GetItem', 'dynamodb:PutItem'];
    const wrapUnwrap = ['kms:Decrypt', 'kms:GenerateDataKey'];
    const secretsOf = (ids: string[]) => ids.map((id) => secretIds[id]!).sort();

    it('grants no wildcard action in any identity policy', () => {
      const statements = identityStatements(template);
      expect(statements.length).toBeGreaterThan(0);
      const wildcards = statements.flatMap(actionsOf).filter((action) => action.includes('*'));
      expect(wildcards).toEqual([]);
    });

    it('token: its connections and the provider cache, token envelopes, every secret, events', () => {
      const token = access('token');
      expect(token).toMatchObject({
        items: { 'connection#*': getPutUpdate, 'cache#*': cacheItems },
        queries: [],
        keyAtRest: true,
        envelope: { 'connection-tokens': wrapUnwrap, 'provider-cache': wrapUnwrap },
        secrets: secretsOf(Object.keys(config.providers)),
        // Its refresh path publishes Connection Refresh Failed / Needs Reauth / Created.
        putEvents: { bus: busId, source: 'oauth-token-broker' },
      });
      expect(token.other.flatMap(actionsOf).sort()).toEqual([
        'logs:CreateLogStream',
        'logs:PutLogEvents',
      ]);
    });

    it('connections: sessions in, summaries and deletes out; no envelope key, no secret', () => {
      const connections = access('connections');
      expect(connections).toMatchObject({
        items: {
          'session#*': ['dynamodb:PutItem'],
          'connection#*': ['dynamodb:DeleteItem', 'dynamodb:GetItem'],
        },
        // The listing index, which projects no ciphertext; never the due index.
        queries: [providerIndex.name],
        keyAtRest: true,
        envelope: {},
        secrets: [],
        putEvents: { bus: busId, source: 'oauth-token-broker' },
      });
      expect(connections.other.flatMap(actionsOf)).not.toContain('kms:Decrypt');
    });

    it('connect-start: consumes sessions, writes sealed flows, reads consent providers’ secrets', () => {
      const start = access('connect-start');
      expect(start.putEvents).toBeUndefined(); // it publishes nothing
      expect(start).toMatchObject({
        queries: [],
        keyAtRest: true,
        secrets: secretsOf(consentProviders(config)),
      });
      // Exactly these (toEqual, not toMatchObject): no startConsent uses the provider cache.
      expect(start.items).toEqual({
        'session#*': ['dynamodb:DeleteItem', 'dynamodb:GetItem'],
        'flow#*': ['dynamodb:PutItem'],
      });
      // It wraps flow secrets but can never unwrap one, nor touch a connection's tokens.
      expect(start.envelope).toEqual({ 'connect-flow': ['kms:GenerateDataKey'] });
    });

    it('connect-callback: consumes flows, writes connections, reads consent providers’ secrets', () => {
      expect(access('connect-callback')).toMatchObject({
        items: {
          'flow#*': ['dynamodb:DeleteItem', 'dynamodb:GetItem'],
          'connection#*': getPutUpdate,
          'cache#*': cacheItems,
        },
        queries: [],
        keyAtRest: true,
        envelope: {
          'connect-flow': ['kms:Decrypt'],
          'connection-tokens': wrapUnwrap,
          'provider-cache': wrapUnwrap,
        },
        secrets: secretsOf(consentProviders(config)),
        putEvents: { bus: busId, source: 'oauth-token-broker' },
      });
    });

    it('refresher: queries the due index, renews connections, parks failed runs in its DLQ', () => {
      const refresher = access('refresher');
      expect(refresher).toMatchObject({
        items: { 'connection#*': getPutUpdate, 'cache#*': cacheItems },
        queries: ['due'],
        keyAtRest: true,
        envelope: { 'connection-tokens': wrapUnwrap, 'provider-cache': wrapUnwrap },
        secrets: secretsOf(Object.keys(config.providers)),
        putEvents: { bus: busId, source: 'oauth-token-broker' },
      });
      const sqs = refresher.other.filter((s) => actionsOf(s).some((a) => a.startsWith('sqs:')));
      expect(sqs).toEqual([
        expect.objectContaining({
          Action: ['sqs:GetQueueAttributes', 'sqs:GetQueueUrl', 'sqs:SendMessage'],
          Resource: { 'Fn::GetAtt': [queueId, 'Arn'] },
        }),
      ]);
    });

    it('lets each function write only to its own log group, and nothing else unexplained', () => {
      for (const name of functionNames) {
        const logGroupId = (fn(name).Properties as { LoggingConfig: { LogGroup: { Ref: string } } })
          .LoggingConfig.LogGroup.Ref;
        const other = access(name).other.filter(
          (s) => !actionsOf(s).every((a) => a.startsWith('sqs:')),
        );
        expect(other, name).toEqual([
          expect.objectContaining({
            Action: ['logs:CreateLogStream', 'logs:PutLogEvents'],
            Resource: { 'Fn::GetAtt': [logGroupId, 'Arn'] },
          }),
        ]);
      }
    });

    it('grants the table, the token key and the secrets to broker function roles only', () => {
      // Every statement naming the table, the token key or a secret belongs to a function role.
      const all = identityStatements(template).filter(
        (s) =>
          refersTo(s.Resource, tableId) ||
          refersTo(s.Resource, keyId) ||
          Object.values(secretIds).some((secretId) => refersTo(s.Resource, secretId)),
      );
      const perFunction = functionNames.flatMap((name) => {
        const roleId = (fn(name).Properties as { Role: { 'Fn::GetAtt': [string] } }).Role[
          'Fn::GetAtt'
        ][0];
        return roleStatements(template, roleId).filter((s) => all.includes(s));
      });
      expect(perFunction).toHaveLength(all.length);
    });

    it('checks the prefixes and purposes it grants against the keys and contexts the stores use', async () => {
      const written: { pk: string }[] = [];
      const purposes: string[] = [];
      const db = {
        send: async (command: { input: { Item?: { pk: string } } }) => {
          if (command.input.Item) written.push(command.input.Item);
          return {};
        },
      } as unknown as DynamoDBDocumentClient;
      const keys: KeyManager = {
        generateDataKey: async (context) => {
          purposes.push(context.purpose!);
          return { plaintext: Buffer.alloc(32, 7), wrapped: Buffer.alloc(8, 1) };
        },
        decryptDataKey: async () => Buffer.alloc(32, 7),
      };
      const envelope = new Envelope(keys);
      const tokens = { accessToken: 'a', tokenType: 'Bearer' };
      await new DynamoConnectionStore(db, 't', envelope).create('p', 'c', tokens, 0);
      await new FlowStore(db, 't', envelope).putFlow('h', {
        provider: 'p',
        connectionId: 'c',
        state: 's',
        callbackUrl: 'https://x/callback/p',
        browserHash: 'b',
        flowSecrets: {},
        expiresAt: 1,
      });
      await new DynamoSealedCache(db, 't', envelope, 'p', () => 0).put('n', 'v', 1);
      expect(purposes).toEqual([
        envelopePurposes.connectionTokens,
        envelopePurposes.connectFlow,
        envelopePurposes.providerCache,
      ]);
      expect(written.map((item) => item.pk)).toEqual([
        expect.stringMatching(new RegExp(`^${itemPrefixes.connection}`)),
        expect.stringMatching(new RegExp(`^${itemPrefixes.flow}`)),
        expect.stringMatching(new RegExp(`^${itemPrefixes.providerCache}`)),
      ]);
      expect(connectionPk('p', 'c').startsWith(itemPrefixes.connection)).toBe(true);
      expect(connectSessionPk('h').startsWith(itemPrefixes.session)).toBe(true);
      expect(connectFlowPk('h').startsWith(itemPrefixes.flow)).toBe(true);
    });
  });

  describe('secrets and environment', () => {
    it('creates one placeholder secret per provider, in its kind’s shape, never a value', () => {
      expect(Object.keys(secretIds).sort()).toEqual(Object.keys(config.providers).sort());
      for (const [providerId, provider] of Object.entries(config.providers)) {
        const fields = protocolOf(provider).secretFields;
        template.hasResourceProperties('AWS::SecretsManager::Secret', {
          Name: `oauth-token-broker/${providerId}`,
          SecretString: Match.absent(),
          GenerateSecretString: Match.objectLike({
            SecretStringTemplate: JSON.stringify(
              Object.fromEntries(fields.slice(0, -1).map((field) => [field, 'REPLACE_ME'])),
            ),
            GenerateStringKey: fields.at(-1),
          }),
        });
      }
    });

    it('puts no secret value in any function environment', () => {
      const environments = functionNames.map((name) => environmentOf(fn(name)));
      const secretFields = new Set(
        Object.values(config.providers).flatMap((entry) => protocolOf(entry).secretFields),
      );
      for (const environment of environments) {
        const names = Object.keys(environment);
        const suggestsValue = names.filter(
          (name) =>
            /SECRET|PASSWORD|PASSWD|PRIVATE|CREDENTIAL|API_?KEY|ACCESS_?KEY|TOKEN/i.test(name) &&
            !/_(PREFIX|NAME|ARN|ID)$/.test(name),
        );
        expect(suggestsValue).toEqual([]);
        const text = JSON.stringify(environment);
        for (const marker of ['REPLACE_ME', ...secretFields]) {
          expect(text).not.toContain(marker);
        }
      }
    });

    it('gives every function the same configuration, and the bus only to those that publish', () => {
      const publishers = ['token', 'connections', 'connect-callback', 'refresher'];
      for (const name of functionNames) {
        const environment = environmentOf(fn(name));
        expect(environment, name).toMatchObject({
          BROKER_MODE: 'aws',
          BROKER_TABLE_NAME: { Ref: tableId },
          BROKER_KMS_KEY_ID: { 'Fn::GetAtt': [keyId, 'Arn'] },
          BROKER_SECRETS_PREFIX: 'oauth-token-broker',
          POWERTOOLS_SERVICE_NAME: 'oauth-token-broker',
          NODE_OPTIONS: '--enable-source-maps',
        });
        expect(environment.BROKER_PUBLIC_BASE_URL).toEqual({
          'Fn::GetAtt': [
            prod.stack.getLogicalId(prod.stack.broker.api.node.defaultChild as never),
            'ApiEndpoint',
          ],
        });
        expect(environment.BROKER_EVENT_BUS, name).toEqual(
          publishers.includes(name) ? { Ref: busId } : undefined,
        );
      }
    });

    it('keeps the configuration out of every function environment (it is in the asset)', () => {
      for (const name of functionNames) {
        const environment = environmentOf(fn(name));
        expect(
          Object.keys(environment).filter((key) => /CONFIG/.test(key)),
          name,
        ).toEqual([]);
        for (const [key, value] of Object.entries(environment)) {
          // Names, ARNs, URLs and flags: never a JSON document.
          if (typeof value === 'string') expect(value, key).not.toMatch(/^\s*[{[]/);
        }
      }
    });
  });

  describe('functions', () => {
    it('deploys one function per handler in functions/', () => {
      const handlers = readdirSync(new URL('../../functions/', import.meta.url))
        .filter((file) => file.endsWith('.ts'))
        .map((file) => file.replace(/\.ts$/, ''))
        .sort();
      expect(Object.keys(fnIds).sort()).toEqual(handlers);
    });

    it('builds every function with the house defaults and its own log group', () => {
      for (const name of functionNames) {
        expect(fn(name).Properties, name).toMatchObject({
          FunctionName: `oauth-token-broker-prod-${name}`,
          Runtime: 'nodejs24.x',
          Architectures: ['arm64'],
          MemorySize: 256,
          Handler: 'index.handler',
        });
        const logGroupId = (fn(name).Properties as { LoggingConfig: { LogGroup: { Ref: string } } })
          .LoggingConfig.LogGroup.Ref;
        expect(resources[logGroupId]).toMatchObject({
          Type: 'AWS::Logs::LogGroup',
          Properties: { RetentionInDays: 30 },
          DeletionPolicy: 'Retain',
        });
      }
      // Own roles: no AWS managed policy (AWSLambdaBasicExecutionRole logs:CreateLogGroup on *).
      for (const role of Object.values(resourcesOfType(template, 'AWS::IAM::Role'))) {
        expect(role.Properties).not.toHaveProperty('ManagedPolicyArns');
      }
    });

    it('gives the refresher a timeout well above the margin it stops new work at', () => {
      const timeout = (fn('refresher').Properties as { Timeout: number }).Timeout;
      expect(timeout).toBe(refresherTimeoutSeconds(config));
      expect(timeout).toBeGreaterThanOrEqual(config.refresh.stopBeforeTimeoutSeconds + 120);
      expect(timeout).toBeLessThanOrEqual(900);
      // A 600 s margin (the schema's maximum) still leaves the run time to do work.
      const slowest = parseConfig({ refresh: { stopBeforeTimeoutSeconds: 600 }, providers: {} });
      expect(refresherTimeoutSeconds(slowest)).toBe(840);
    });
  });

  describe('HTTP API', () => {
    it('serves a throttled $default stage whose access log never includes the query string', () => {
      template.resourceCountIs('AWS::ApiGatewayV2::Api', 1);
      template.hasResourceProperties('AWS::ApiGatewayV2::Stage', {
        StageName: '$default',
        AutoDeploy: true,
        DefaultRouteSettings: {
          ThrottlingRateLimit: Match.anyValue(),
          ThrottlingBurstLimit: Match.anyValue(),
        },
        AccessLogSettings: {
          DestinationArn: { 'Fn::GetAtt': [Match.anyValue(), 'Arn'] },
          Format: Match.stringLikeRegexp('\\$context\\.routeKey'),
        },
      });
      const stage = Object.values(resourcesOfType(template, 'AWS::ApiGatewayV2::Stage'))[0]!;
      const format = (stage.Properties as { AccessLogSettings: { Format: string } })
        .AccessLogSettings.Format;
      const variables = Object.values(JSON.parse(format) as Record<string, string>);
      // Only $context variables, none of them the raw request (querystring, full URL).
      expect(variables.every((v) => v.startsWith('$context.'))).toBe(true);
      expect(format).not.toMatch(/query|\$request|uri/i);
      template.resourceCountIs('AWS::ApiGatewayV2::DomainName', 0);
    });

    it('routes GET /connect/{provider} and GET /callback/{provider} to their functions', () => {
      const routes = Object.values(resourcesOfType(template, 'AWS::ApiGatewayV2::Route')).map(
        (route) => route.Properties as { RouteKey: string; Target: unknown },
      );
      const integrations = resourcesOfType(template, 'AWS::ApiGatewayV2::Integration');
      const served = routes.map((route) => {
        const integrationId = JSON.stringify(route.Target).match(/"Ref":"([^"]+)"/)![1]!;
        const integration = integrations[integrationId]!.Properties as {
          IntegrationType: string;
          IntegrationUri: unknown;
          PayloadFormatVersion: string;
        };
        expect(integration).toMatchObject({
          IntegrationType: 'AWS_PROXY',
          PayloadFormatVersion: '2.0',
        });
        const functionName = Object.entries(fnIds).find(([, id]) =>
          refersTo(integration.IntegrationUri, id),
        )?.[0];
        return `${route.RouteKey} → ${functionName}`;
      });
      // The same routes the offline runtime serves.
      expect(served.sort()).toEqual(
        localRoutes.map((r) => `${r.method} ${r.path} → ${r.functionName}`).sort(),
      );
      expect(served).toContain('GET /connect/{provider} → connect-start');
      expect(served).toContain('GET /callback/{provider} → connect-callback');
    });
  });

  describe('schedule, events and alarms', () => {
    it('runs the refresher on the configured rate, with retries and the dead-letter queue', () => {
      template.hasResourceProperties('AWS::Events::Rule', {
        ScheduleExpression: `rate(${config.refresh.scheduleMinutes} minutes)`,
        State: 'ENABLED',
        Targets: [
          Match.objectLike({
            Arn: { 'Fn::GetAtt': [fnIds.refresher, 'Arn'] },
            RetryPolicy: { MaximumRetryAttempts: 2, MaximumEventAgeInSeconds: Match.anyValue() },
            DeadLetterConfig: { Arn: { 'Fn::GetAtt': [queueId, 'Arn'] } },
          }),
        ],
      });
      // A run that fails inside the function is retried once, then lands in the same queue.
      template.hasResourceProperties('AWS::Lambda::EventInvokeConfig', {
        FunctionName: { Ref: fnIds.refresher },
        MaximumRetryAttempts: 1,
        DestinationConfig: { OnFailure: { Destination: { 'Fn::GetAtt': [queueId, 'Arn'] } } },
      });
      expect(resources[queueId]!.Properties).toMatchObject({
        SqsManagedSseEnabled: true,
        MessageRetentionPeriod: 14 * 86400,
      });
      template.hasResourceProperties('AWS::SQS::QueuePolicy', {
        Queues: [{ Ref: queueId }],
        PolicyDocument: {
          Statement: Match.arrayWith([
            Match.objectLike({
              Effect: 'Deny',
              Condition: { Bool: { 'aws:SecureTransport': 'false' } },
            }),
          ]),
        },
      });
    });

    it('publishes lifecycle events to the broker’s own bus', () => {
      expect(resources[busId]!.Properties).toMatchObject({ Name: 'oauth-token-broker-prod' });
      const putters = identityStatements(template).filter((s) =>
        actionsOf(s).includes('events:PutEvents'),
      );
      expect(putters).toHaveLength(4); // token, connections, connect-callback, refresher
      for (const statement of putters) {
        expect(statement.Resource).toEqual({ 'Fn::GetAtt': [busId, 'Arn'] });
      }
    });

    it('alarms on every function’s errors and on refresher failures, to the alarm topic', () => {
      const alarms = Object.values(resourcesOfType(template, 'AWS::CloudWatch::Alarm')).map(
        (alarm) =>
          alarm.Properties as {
            AlarmName: string;
            MetricName: string;
            Namespace: string;
            Dimensions?: { Name: string; Value: unknown }[];
            AlarmActions: unknown[];
            OKActions: unknown[];
          },
      );
      for (const alarm of alarms) {
        expect(alarm.AlarmActions, alarm.AlarmName).toEqual([{ Ref: topicId }]);
        expect(alarm.OKActions, alarm.AlarmName).toEqual([{ Ref: topicId }]);
      }
      for (const name of functionNames) {
        expect(
          alarms.some(
            (alarm) =>
              alarm.Namespace === 'AWS/Lambda' &&
              alarm.MetricName === 'Errors' &&
              refersTo(alarm.Dimensions, fnIds[name]),
          ),
          name,
        ).toBe(true);
      }
      expect(alarms).toContainEqual(
        expect.objectContaining({
          Namespace: 'AWS/SQS',
          MetricName: 'ApproximateNumberOfMessagesVisible',
          Dimensions: [{ Name: 'QueueName', Value: { 'Fn::GetAtt': [queueId, 'QueueName'] } }],
        }),
      );
      const refresherLogs = (
        fn('refresher').Properties as { LoggingConfig: { LogGroup: { Ref: string } } }
      ).LoggingConfig.LogGroup.Ref;
      template.hasResourceProperties('AWS::Logs::MetricFilter', {
        LogGroupName: { Ref: refresherLogs },
        FilterPattern: `{ $.message = "${refresherSummaryMessage}" }`,
        MetricTransformations: [
          Match.objectLike({ MetricName: 'RefreshFailures', MetricValue: '$.failed' }),
        ],
      });
      expect(alarms).toContainEqual(
        expect.objectContaining({
          Namespace: 'oauth-token-broker/prod',
          MetricName: 'RefreshFailures',
        }),
      );
    });

    it('encrypts the alarm topic with a key of its own that only CloudWatch alarms may use', () => {
      const topic = resources[topicId]!.Properties as { KmsMasterKeyId: unknown };
      expect(JSON.stringify(topic.KmsMasterKeyId)).not.toContain(keyId);
      const topicKeyId = (topic.KmsMasterKeyId as { 'Fn::GetAtt': [string] })['Fn::GetAtt'][0];
      expect(resources[topicKeyId]!.Properties).toMatchObject({ EnableKeyRotation: true });
      const keyPolicy = (
        resources[topicKeyId]!.Properties as { KeyPolicy: { Statement: Record<string, unknown>[] } }
      ).KeyPolicy.Statement;
      expect(keyPolicy).toContainEqual(
        expect.objectContaining({
          Principal: { Service: 'cloudwatch.amazonaws.com' },
          Condition: expect.objectContaining({ ArnLike: expect.anything() }),
        }),
      );
      // The token key's policy names no service principal: nobody but the account's roles.
      const tokenKeyPrincipals = (
        resources[keyId]!.Properties as { KeyPolicy: { Statement: { Principal: unknown }[] } }
      ).KeyPolicy.Statement.map((statement) => JSON.stringify(statement.Principal));
      expect(tokenKeyPrincipals.filter((principal) => principal.includes('Service'))).toEqual([]);
      template.hasResourceProperties('AWS::SNS::TopicPolicy', {
        PolicyDocument: {
          Statement: Match.arrayWith([
            Match.objectLike({
              Effect: 'Deny',
              Condition: { Bool: { 'aws:SecureTransport': 'false' } },
            }),
          ]),
        },
      });
    });
  });

  it('outputs the API, functions, table, bus, alarm topic and consent callback URLs', () => {
    const outputs = template.toJSON().Outputs as Record<string, { Value: unknown }>;
    expect(Object.keys(outputs)).toEqual(
      expect.arrayContaining([
        'ApiUrl',
        'TokenFunctionName',
        'TokenFunctionArn',
        'ConnectionsFunctionName',
        'ConnectionsFunctionArn',
        'TableName',
        'EventBusName',
        'AlarmTopicArn',
      ]),
    );
    expect(outputs.TableName!.Value).toEqual({ Ref: tableId });
    expect(outputs.ConnectionsFunctionName!.Value).toEqual({ Ref: fnIds.connections });
    expect(outputs.EventBusName!.Value).toEqual({ Ref: busId });
    expect(outputs.AlarmTopicArn!.Value).toEqual({ Ref: topicId });
    const callbacks = Object.keys(outputs).filter((name) => name.startsWith('CallbackUrl'));
    const consent = consentProviders(config);
    expect(callbacks).toHaveLength(consent.length);
    for (const providerId of consent) {
      const name = `CallbackUrl${providerId[0]!.toUpperCase()}${providerId.slice(1)}`;
      expect(joined(outputs[name]?.Value, 'https://api.example')).toBe(
        `https://api.example/callback/${providerId}`,
      );
    }
  });
});

describe('BrokerStack (stage dev, custom domain)', () => {
  let dev: SynthesizedBroker;
  beforeAll(() => {
    dev = synthBroker({ stage: 'dev' }, { bundle: false });
  });

  it('lets a dev stack be torn down', () => {
    dev.template.hasResource('AWS::DynamoDB::Table', {
      DeletionPolicy: 'Delete',
      Properties: Match.objectLike({ DeletionProtectionEnabled: false }),
    });
    dev.template.hasResourceProperties('AWS::KMS::Alias', {
      AliasName: 'alias/oauth-token-broker-dev',
    });
  });

  it('warns at synth when a provider points at the offline sandbox', () => {
    const warnings = Annotations.fromStack(dev.stack).findWarning(
      '*',
      Match.stringLikeRegexp('environment "sandbox"'),
    );
    expect(warnings).toHaveLength(1);
  });

  it('serves the API on the custom domain and builds public URLs from it', () => {
    const { template } = synthBroker(
      {
        stage: 'staging',
        domainName: 'broker.example.com',
        certificateArn: 'arn:aws:acm:eu-west-1:123456789012:certificate/abc',
      },
      { bundle: false },
    );
    template.hasResourceProperties('AWS::ApiGatewayV2::DomainName', {
      DomainName: 'broker.example.com',
    });
    template.resourceCountIs('AWS::ApiGatewayV2::ApiMapping', 1);
    const outputs = template.toJSON().Outputs as Record<string, { Value: unknown }>;
    expect(outputs.ApiUrl!.Value).toBe('https://broker.example.com');
    for (const providerId of consentProviders(loadConfig())) {
      const name = `CallbackUrl${providerId[0]!.toUpperCase()}${providerId.slice(1)}`;
      expect(outputs[name]!.Value).toBe(`https://broker.example.com/callback/${providerId}`);
    }
    for (const fn of Object.values(resourcesOfType(template, 'AWS::Lambda::Function'))) {
      expect(environmentOf(fn).BROKER_PUBLIC_BASE_URL).toBe('https://broker.example.com');
    }
    expect(outputs.ApiDomainTarget).toBeDefined();
  });

  it('refuses a malformed stage or half a custom domain', () => {
    expect(() => synthBroker({ stage: 'Prod!' }, { bundle: false })).toThrow(/context stage/);
    expect(() => synthBroker({ domainName: 'broker.example.com' }, { bundle: false })).toThrow(
      /both domainName and certificateArn/,
    );
  });
});
