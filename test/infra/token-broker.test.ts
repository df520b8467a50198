import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { App, Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BrokerStack } from '../../infra/broker-stack.ts';
import { configFileName } from '../../infra/broker-function.ts';
import { brokerFunctionNames } from '../../infra/functions.ts';
import { keyAdminActions, TokenBroker } from '../../infra/token-broker.ts';
import { loadConfig, parseConfig } from '../../shared/config.ts';
import { cdkJsonContext, resourcesOfType, type Resource } from './synth.ts';

const outdirs: string[] = [];
afterAll(() => {
  for (const outdir of outdirs) rmSync(outdir, { recursive: true, force: true });
});

function app(bundle: boolean): App {
  const outdir = mkdtempSync(join(tmpdir(), 'broker-construct-'));
  outdirs.push(outdir);
  return new App({
    outdir,
    context: {
      ...cdkJsonContext(),
      // As the CLI sets it: each function's metadata names its staged asset directory.
      'aws:cdk:enable-asset-metadata': true,
      ...(bundle ? {} : { 'aws:cdk:bundling-stacks': [] }),
    },
  });
}

/** A configuration with `count` OAuth 2.0 providers, each with its own endpoints and scopes. */
function manyProviders(count: number): Record<string, unknown> {
  const providers = Object.fromEntries(
    Array.from({ length: count }, (_, i) => [
      `provider-${String(i).padStart(2, '0')}`,
      {
        kind: 'oauth2',
        authorizationUrl: `https://login.provider-${i}.example.com/oauth2/v2/authorize`,
        tokenUrl: `https://login.provider-${i}.example.com/oauth2/v2/token`,
        scopes: ['openid-less.read', 'accounts.read', 'payments.write', `tenant-${i}.admin`],
        authorizationParams: { prompt: 'consent', access_type: 'offline' },
      },
    ]),
  );
  return { allowedReturnTo: ['https://app.example.com/'], providers };
}

describe('TokenBroker: configuration of any size', () => {
  // Bundles the five functions with esbuild: seconds each on two shared cores.
  it(
    'synthesizes 60 providers, the configuration a file in each function asset',
    { timeout: 120_000 },
    () => {
      const config = manyProviders(60);
      // Well past the 4 KB Lambda allows for all environment variables of a function together.
      expect(JSON.stringify(config).length).toBeGreaterThan(10_000);
      const big = app(true);
      const stack = new BrokerStack(big, 'Big', { stage: 'big', config });
      const assembly = big.synth();
      const template = Template.fromStack(stack);
      const functions = resourcesOfType(template, 'AWS::Lambda::Function');
      expect(Object.keys(functions)).toHaveLength(brokerFunctionNames.length);
      for (const [id, fn] of Object.entries(functions)) {
        const environment = (
          fn.Properties as { Environment: { Variables: Record<string, unknown> } }
        ).Environment.Variables;
        expect(JSON.stringify(environment).length, id).toBeLessThan(2048);
        const assetPath = (fn.Metadata as Record<string, string>)['aws:asset:path']!;
        const assetDir = join(assembly.directory, assetPath);
        const shipped = parseConfig(
          JSON.parse(readFileSync(join(assetDir, configFileName), 'utf8')),
          { source: 'asset' },
        );
        expect(Object.keys(shipped.providers), id).toHaveLength(60);
        expect(readFileSync(join(assetDir, 'index.mjs'), 'utf8').length, id).toBeGreaterThan(1000);
      }
    },
  );
});

describe('TokenBroker: the construct in another app', () => {
  let template: Template;
  let resources: Record<string, Resource>;
  let broker: TokenBroker;
  let stack: Stack;
  let consumerRoleId: string;
  const id = (construct: { node: { defaultChild?: unknown } }) =>
    stack.getLogicalId(construct.node.defaultChild as never);

  beforeAll(() => {
    stack = new Stack(app(false), 'Platform');
    broker = new TokenBroker(stack, 'Broker', { stage: 'prod', config: loadConfig() });
    const consumer = new lambda.Function(stack, 'Consumer', {
      runtime: lambda.Runtime.NODEJS_24_X,
      handler: 'index.handler',
      code: lambda.Code.fromInline('export const handler = async () => ({});'),
    });
    broker.grantFetchToken(consumer);
    consumerRoleId = id(consumer.role!);
    template = Template.fromStack(stack);
    resources = template.toJSON().Resources as Record<string, Resource>;
  });

  it('grantFetchToken: the consumer may invoke the token function, and nothing else', () => {
    const policies = Object.values(resourcesOfType(template, 'AWS::IAM::Policy')).filter((p) =>
      JSON.stringify((p.Properties as { Roles: unknown }).Roles).includes(consumerRoleId),
    );
    const statements = policies.flatMap(
      (p) =>
        (p.Properties as { PolicyDocument: { Statement: unknown[] } }).PolicyDocument.Statement,
    );
    const tokenFn = id(broker.tokenFunction);
    expect(statements).toEqual([
      {
        Action: 'lambda:InvokeFunction',
        Effect: 'Allow',
        Resource: [
          { 'Fn::GetAtt': [tokenFn, 'Arn'] },
          { 'Fn::Join': ['', [{ 'Fn::GetAtt': [tokenFn, 'Arn'] }, ':*']] },
        ],
      },
    ]);
  });

  it('grantManageConnections: the connections function only', () => {
    const backend = new Stack(app(false), 'Backend');
    const other = new TokenBroker(backend, 'Broker', { stage: 'dev', config: loadConfig() });
    const role = new iam.Role(backend, 'Backend', {
      assumedBy: new iam.ServicePrincipal('ecs-tasks.amazonaws.com'),
    });
    other.grantManageConnections(role);
    const idIn = (construct: { node: { defaultChild?: unknown } }) =>
      backend.getLogicalId(construct.node.defaultChild as never);
    const statements = Template.fromStack(backend).toJSON().Resources as Record<string, Resource>;
    const backendPolicy = Object.values(statements).find(
      (r) =>
        r.Type === 'AWS::IAM::Policy' &&
        JSON.stringify((r.Properties as { Roles: unknown }).Roles).includes(idIn(role)),
    )!;
    expect(JSON.stringify(backendPolicy.Properties)).toContain(idIn(other.connectionsFunction));
    expect(JSON.stringify(backendPolicy.Properties)).not.toContain(idIn(other.tokenFunction));
  });

  it('publishes the function ARNs as SSM parameters', () => {
    expect(broker.parameterNames).toEqual({
      tokenFunctionArn: '/oauth-token-broker/prod/token-function-arn',
      connectionsFunctionArn: '/oauth-token-broker/prod/connections-function-arn',
    });
    template.hasResourceProperties('AWS::SSM::Parameter', {
      Name: '/oauth-token-broker/prod/token-function-arn',
      Type: 'String',
      Value: { 'Fn::GetAtt': [id(broker.tokenFunction), 'Arn'] },
    });
    template.hasResourceProperties('AWS::SSM::Parameter', {
      Name: '/oauth-token-broker/prod/connections-function-arn',
      Value: { 'Fn::GetAtt': [id(broker.connectionsFunction), 'Arn'] },
    });
  });

  it('runs every function on nodejs24.x with X-Ray tracing on by default', () => {
    for (const fn of Object.values(broker.functions)) {
      expect(resources[id(fn)]!.Properties, fn.node.id).toMatchObject({
        Runtime: 'nodejs24.x',
        TracingConfig: { Mode: 'Active' },
      });
    }
  });

  it('lets tracing be turned off: no X-Ray mode, no X-Ray permission', () => {
    const quiet = new Stack(app(false), 'Quiet');
    new TokenBroker(quiet, 'Broker', { stage: 'dev', config: loadConfig(), tracing: false });
    const json = JSON.stringify(Template.fromStack(quiet).toJSON());
    expect(json).not.toContain('xray:');
    expect(json).not.toContain('"Mode":"Active"');
  });

  it('reserves concurrency 1 for the refresher and caps the public routes’ functions', () => {
    const reserved = (name: keyof TokenBroker['functions']) =>
      (resources[id(broker.functions[name])]!.Properties as Record<string, unknown>)
        .ReservedConcurrentExecutions;
    expect(reserved('refresher')).toBe(1);
    expect(reserved('connect-start')).toBe(10);
    expect(reserved('connect-callback')).toBe(10);
    expect(reserved('token')).toBeUndefined();
    const capped = new Stack(app(false), 'Capped');
    const small = new TokenBroker(capped, 'Broker', {
      stage: 'dev',
      config: loadConfig(),
      publicRouteConcurrency: 3,
    });
    const cappedResources = Template.fromStack(capped).toJSON().Resources as Record<
      string,
      Resource
    >;
    const startId = capped.getLogicalId(
      small.functions['connect-start'].node.defaultChild as never,
    );
    expect(cappedResources[startId]!.Properties).toMatchObject({ ReservedConcurrentExecutions: 3 });
  });

  describe('token key policy', () => {
    type KeyStatement = {
      Sid?: string;
      Action: string | string[];
      Principal: { AWS?: unknown };
      Condition?: Record<string, Record<string, unknown>>;
    };
    const statements = () =>
      (resources[id(broker.key)]!.Properties as { KeyPolicy: { Statement: KeyStatement[] } })
        .KeyPolicy.Statement;
    const actions = (s: KeyStatement) => [s.Action].flat();
    const use = ['kms:Decrypt', 'kms:GenerateDataKey', 'kms:Encrypt', 'kms:ReEncryptFrom'];

    it('lets only the broker’s roles use the key directly, each for its purposes', () => {
      const roleIds = Object.values(broker.functions).map((fn) => id(fn.role!));
      const direct = statements().filter(
        (s) =>
          actions(s).some((a) => use.includes(a) || a.includes('*')) &&
          !s.Condition?.StringEquals?.['kms:ViaService'],
      );
      expect(direct.length).toBeGreaterThan(0);
      for (const statement of direct) {
        expect(actions(statement).every((a) => ['kms:Decrypt', 'kms:GenerateDataKey'].includes(a)));
        // Roles by name (several in one statement where their purposes are the same).
        for (const principal of [statement.Principal.AWS].flat() as { 'Fn::GetAtt'?: string[] }[]) {
          expect(roleIds, JSON.stringify(statement)).toContain(principal['Fn::GetAtt']?.[0]);
        }
        expect(statement.Condition?.StringEquals?.['kms:EncryptionContext:purpose']).toBeDefined();
      }
      // The connections function decrypts nothing: the key policy names its role nowhere.
      expect(JSON.stringify(direct)).not.toContain(id(broker.connectionsFunction.role!));
    });

    it('gives the account administration only, never Decrypt, and the table through DynamoDB', () => {
      const admin = statements().find((s) => s.Sid === 'KeyAdministration')!;
      expect(actions(admin).sort()).toEqual([...keyAdminActions].sort());
      for (const action of actions(admin)) {
        expect(action).not.toMatch(/\*|Decrypt|Encrypt|GenerateDataKey|CreateGrant/);
      }
      const atRest = statements().find((s) => s.Sid === 'TokenTableAtRestThroughDynamoDB')!;
      expect(JSON.stringify(atRest.Condition?.StringEquals?.['kms:ViaService'])).toContain(
        'dynamodb.',
      );
      // Nothing else in the policy: admin, table at rest, and the roles' envelope statements.
      expect(
        statements().filter(
          (s) =>
            s.Sid !== 'KeyAdministration' &&
            s.Sid !== 'TokenTableAtRestThroughDynamoDB' &&
            !s.Condition?.StringEquals?.['kms:EncryptionContext:purpose'],
        ),
      ).toEqual([]);
    });

    it('administers the key by the principal given', () => {
      const other = new Stack(app(false), 'Admin');
      const admin = new iam.Role(other, 'KeyAdmins', {
        assumedBy: new iam.AccountRootPrincipal(),
      });
      const withAdmin = new TokenBroker(other, 'Broker', {
        stage: 'dev',
        config: loadConfig(),
        keyAdmin: admin,
      });
      const keyPolicy = (
        Template.fromStack(other).toJSON().Resources[
          other.getLogicalId(withAdmin.key.node.defaultChild as never)
        ] as { Properties: { KeyPolicy: { Statement: KeyStatement[] } } }
      ).Properties.KeyPolicy.Statement.find((s) => s.Sid === 'KeyAdministration')!;
      expect(keyPolicy.Principal.AWS).toEqual({
        'Fn::GetAtt': [other.getLogicalId(admin.node.defaultChild as never), 'Arn'],
      });
    });
  });

  describe('alarms', () => {
    const alarm = (name: string) =>
      Object.values(resourcesOfType(template, 'AWS::CloudWatch::Alarm')).find(
        (a) =>
          (a.Properties as { AlarmName: string }).AlarmName === `oauth-token-broker-prod-${name}`,
      )?.Properties as Record<string, unknown> | undefined;

    it('alarms on any internal_error answer of the token function', () => {
      expect(alarm('token-internal-errors')).toMatchObject({
        Namespace: 'oauth-token-broker/prod',
        MetricName: 'TokenAnswers',
        Dimensions: expect.arrayContaining([{ Name: 'code', Value: 'internal_error' }]),
        Statistic: 'Sum',
        Threshold: 1,
        ComparisonOperator: 'GreaterThanOrEqualToThreshold',
      });
      expect(alarm('token-provider-unavailable')).toMatchObject({
        MetricName: 'TokenAnswers',
        Threshold: 10,
      });
    });

    it('treats a missing refresher heartbeat as breaching, over three schedule periods', () => {
      const scheduleMinutes = loadConfig().refresh.scheduleMinutes;
      expect(alarm('refresher-heartbeat')).toMatchObject({
        Namespace: 'oauth-token-broker/prod',
        MetricName: 'RefresherRuns',
        Period: 3 * scheduleMinutes * 60,
        EvaluationPeriods: 1,
        Threshold: 1,
        ComparisonOperator: 'LessThanThreshold',
        TreatMissingData: 'breaching',
      });
    });

    it('alarms on dead letters, throttles, durations near the timeout and API 5xx', () => {
      expect(alarm('refresher-dead-letters')).toMatchObject({
        MetricName: 'ApproximateNumberOfMessagesVisible',
      });
      expect(alarm('token-throttles')).toMatchObject({ MetricName: 'Throttles' });
      expect(alarm('token-duration')).toMatchObject({
        MetricName: 'Duration',
        Statistic: 'Maximum',
        Threshold: 27_000, // 90% of 30 s
      });
      expect(alarm('api-5xx')).toMatchObject({ MetricName: '5xx', Namespace: 'AWS/ApiGateway' });
      for (const a of Object.values(resourcesOfType(template, 'AWS::CloudWatch::Alarm'))) {
        expect((a.Properties as { AlarmActions: unknown[] }).AlarmActions).toHaveLength(1);
      }
    });

    it('draws the figures on a dashboard', () => {
      const dashboards = Object.values(resourcesOfType(template, 'AWS::CloudWatch::Dashboard'));
      expect(dashboards).toHaveLength(1);
      const body = JSON.stringify(dashboards[0]!.Properties);
      for (const figure of ['TokenAnswers', 'Renewals', 'RefresherRuns', 'Throttles', '5xx']) {
        expect(body).toContain(figure);
      }
    });
  });
});
