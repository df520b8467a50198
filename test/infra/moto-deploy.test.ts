import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  CreateTableCommand,
  DynamoDBClient,
  GetItemCommand,
  UpdateContinuousBackupsCommand,
  UpdateTimeToLiveCommand,
  waitUntilTableExists,
  type CreateTableCommandInput,
} from '@aws-sdk/client-dynamodb';
import { CreateEventBusCommand, EventBridgeClient } from '@aws-sdk/client-eventbridge';
import { CreateAliasCommand, CreateKeyCommand, KMSClient } from '@aws-sdk/client-kms';
import { CreateSecretCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { handler as refresherHandler } from '../../functions/refresher.ts';
import { handler as tokenHandler } from '../../functions/token.ts';
import { lambdaContext } from '../../infra/local/lambda-context.ts';
import { startLocalBroker, type LocalBroker } from '../../infra/local/local-broker.ts';
import { configFileName } from '../../infra/broker-function.ts';
import { refresherSummaryMessage } from '../../infra/monitoring.ts';
import { setBroker } from '../../shared/broker-core.ts';
import { parseConfig } from '../../shared/config.ts';
import { captureOutput } from '../helpers/local.ts';
import {
  removeSynthOutputs,
  resourcesOfType,
  synthBroker,
  type Resource,
  type SynthesizedBroker,
} from './synth.ts';

// "Plays the deployed stack on moto" (issue 5): the synthesized template, not a hand-written set-up,
// says which table, key, secrets and bus exist and what environment each function gets. moto (an
// AWS API emulator, test/setup/moto.ts) stands in for the account; the providers are the offline
// runtime's sandboxes over real HTTP.
const motoUrl = inject('motoUrl');
if (!motoUrl) console.warn('SKIPPED: the stack played on moto (moto is not available here)');

afterAll(removeSynthOutputs);

const region = 'us-east-1';
const aws = { region, endpoint: motoUrl, credentials: { accessKeyId: 'x', secretAccessKey: 'x' } };

type Template = { Resources: Record<string, Resource> };
type Physical = { ref: string; attributes: Record<string, string> };

/**
 * Resolves a template value with the resources created on moto: Ref, Fn::GetAtt, Fn::Join and
 * the pseudo parameters. A reference to anything not created fails the test, so a function that
 * gains a dependency the test does not stand up is noticed.
 */
function resolveValue(value: unknown, physical: Record<string, Physical>): string {
  if (typeof value === 'string') return value;
  const intrinsic = value as Record<string, unknown>;
  if (typeof intrinsic.Ref === 'string') {
    const pseudo: Record<string, string> = {
      'AWS::Region': region,
      'AWS::URLSuffix': 'amazonaws.com',
      'AWS::Partition': 'aws',
      'AWS::AccountId': '123456789012',
    };
    const resolved = pseudo[intrinsic.Ref] ?? physical[intrinsic.Ref]?.ref;
    if (resolved === undefined) throw new Error(`not created on moto: Ref ${intrinsic.Ref}`);
    return resolved;
  }
  if (Array.isArray(intrinsic['Fn::GetAtt'])) {
    const [id, attribute] = intrinsic['Fn::GetAtt'] as [string, string];
    const resolved = physical[id]?.attributes[attribute];
    if (resolved === undefined) throw new Error(`not created on moto: ${id}.${attribute}`);
    return resolved;
  }
  if (Array.isArray(intrinsic['Fn::Join'])) {
    const [separator, parts] = intrinsic['Fn::Join'] as [string, unknown[]];
    return parts.map((part) => resolveValue(part, physical)).join(separator);
  }
  throw new Error(`unsupported template value ${JSON.stringify(value)}`);
}

describe.skipIf(!motoUrl)('the deployed stack, played on moto', () => {
  const dynamo = new DynamoDBClient(aws);
  const kms = new KMSClient(aws);
  const secretsManager = new SecretsManagerClient(aws);
  const eventBridge = new EventBridgeClient(aws);
  const run = `${Date.now().toString(36)}${randomBytes(3).toString('hex')}`;
  // The deployment's configuration: the sandbox providers, under a prefix of this run's own (moto
  // lives for the whole test run). It reaches the stack the way `cdk synth` reads it.
  const config = parseConfig({
    secretsPrefix: `otb-moto-${run}`,
    refresh: { scheduleMinutes: 5 },
    providers: {
      quiqup: { catalog: 'quiqup', environment: 'sandbox' },
      quidkey: { catalog: 'quidkey', environment: 'sandbox', refreshLeadSeconds: 60 },
    },
  });
  let synthesized: SynthesizedBroker['template'];
  let template: Template;
  let ids: { table: string; key: string; token: string; refresher: string };
  const physical: Record<string, Physical> = {};
  let local: LocalBroker;
  let dataDir: string;
  let tableName: string;
  /** The functions' code directory as deployed: what their asset holds besides the bundle. */
  let taskRoot: string;

  beforeAll(async () => {
    const saved = process.env.BROKER_CONFIG_JSON;
    process.env.BROKER_CONFIG_JSON = JSON.stringify(config);
    try {
      const broker = synthBroker({ stage: 'moto' }, { bundle: false });
      synthesized = broker.template;
      template = synthesized.toJSON() as Template;
      const { stack } = broker;
      const built = stack.broker;
      taskRoot = mkdtempSync(join(tmpdir(), 'broker-task-root-'));
      writeFileSync(join(taskRoot, configFileName), built.configJson);
      const id = (construct: { node: { defaultChild?: unknown } }) =>
        stack.getLogicalId(construct.node.defaultChild as never);
      ids = {
        table: id(built.table),
        key: id(built.key),
        token: id(built.functions.token),
        refresher: id(built.functions.refresher),
      };
      // The HTTP API is not played here (no route is called); its endpoint is a stand-in.
      physical[id(built.api)] = {
        ref: 'motoapi',
        attributes: { ApiEndpoint: `https://motoapi.execute-api.${region}.amazonaws.com` },
      };
    } finally {
      if (saved === undefined) delete process.env.BROKER_CONFIG_JSON;
      else process.env.BROKER_CONFIG_JSON = saved;
    }

    // The sandbox providers, and the credentials they accept (the "real sandbox values").
    dataDir = mkdtempSync(join(tmpdir(), 'broker-moto-'));
    local = await startLocalBroker({
      port: 0,
      dataDir,
      persist: false,
      config,
      refresherIntervalSeconds: 0, // its own schedule would run a handler with our broker
    });
    setBroker(undefined); // startLocalBroker installs its broker as the container's: not ours
    // Short tokens, so the one fetched below falls due within the refresher's window.
    local.sandboxes.quidkey.accessTokenSeconds = 120;
    const sandboxSecrets = JSON.parse(
      readFileSync(join(dataDir, 'secrets.json'), 'utf8'),
    ) as Record<string, Record<string, string>>;

    // The key, as the template describes it.
    const keyProperties = template.Resources[ids.key]!.Properties as {
      Description: string;
      EnableKeyRotation: boolean;
    };
    expect(keyProperties.EnableKeyRotation).toBe(true);
    const key = (await kms.send(new CreateKeyCommand({ Description: keyProperties.Description })))
      .KeyMetadata!;
    physical[ids.key] = { ref: key.KeyId!, attributes: { Arn: key.Arn! } };
    for (const alias of Object.values(resourcesOfType(synthesized, 'AWS::KMS::Alias'))) {
      const { AliasName, TargetKeyId } = alias.Properties as {
        AliasName: string;
        TargetKeyId: unknown;
      };
      if (JSON.stringify(TargetKeyId).includes(ids.key)) {
        await kms.send(
          new CreateAliasCommand({ AliasName: `${AliasName}-${run}`, TargetKeyId: key.KeyId! }),
        );
      }
    }

    // The table: key schema, attributes, indexes, billing, encryption, TTL and PITR from the template.
    const table = template.Resources[ids.table]!.Properties as Record<string, unknown> & {
      SSESpecification: { SSEEnabled: boolean; SSEType: string; KMSMasterKeyId: unknown };
      TimeToLiveSpecification: { AttributeName: string; Enabled: boolean };
      PointInTimeRecoverySpecification: { PointInTimeRecoveryEnabled: boolean };
    };
    tableName = `OAuthTokenBroker-moto-TokenTable-${run}`;
    await dynamo.send(
      new CreateTableCommand({
        TableName: tableName,
        KeySchema: table.KeySchema,
        AttributeDefinitions: table.AttributeDefinitions,
        GlobalSecondaryIndexes: table.GlobalSecondaryIndexes,
        BillingMode: table.BillingMode,
        SSESpecification: {
          Enabled: table.SSESpecification.SSEEnabled,
          SSEType: table.SSESpecification.SSEType,
          KMSMasterKeyId: resolveValue(table.SSESpecification.KMSMasterKeyId, physical),
        },
      } as CreateTableCommandInput),
    );
    await waitUntilTableExists(
      { client: dynamo, maxWaitTime: 20, minDelay: 0.1, maxDelay: 1 },
      { TableName: tableName },
    );
    await dynamo.send(
      new UpdateTimeToLiveCommand({
        TableName: tableName,
        TimeToLiveSpecification: {
          AttributeName: table.TimeToLiveSpecification.AttributeName,
          Enabled: table.TimeToLiveSpecification.Enabled,
        },
      }),
    );
    await dynamo.send(
      new UpdateContinuousBackupsCommand({
        TableName: tableName,
        PointInTimeRecoverySpecification: {
          PointInTimeRecoveryEnabled:
            table.PointInTimeRecoverySpecification.PointInTimeRecoveryEnabled,
        },
      }),
    );
    physical[ids.table] = {
      ref: tableName,
      attributes: { Arn: `arn:aws:dynamodb:${region}:123456789012:table/${tableName}` },
    };

    // One secret per provider under the template's names, holding the sandbox's credentials.
    for (const [logicalId, secret] of Object.entries(
      resourcesOfType(synthesized, 'AWS::SecretsManager::Secret'),
    )) {
      const { Name, Description } = secret.Properties as { Name: string; Description: string };
      const providerId = Name.slice(config.secretsPrefix.length + 1);
      expect(sandboxSecrets[providerId], providerId).toBeDefined();
      const out = await secretsManager.send(
        new CreateSecretCommand({
          Name,
          Description,
          SecretString: JSON.stringify(sandboxSecrets[providerId]),
        }),
      );
      physical[logicalId] = { ref: out.ARN!, attributes: {} };
    }

    // The lifecycle event bus.
    for (const [logicalId, bus] of Object.entries(
      resourcesOfType(synthesized, 'AWS::Events::EventBus'),
    )) {
      const { Name } = bus.Properties as { Name: string };
      const name = `${Name}-${run}`;
      const out = await eventBridge.send(new CreateEventBusCommand({ Name: name }));
      physical[logicalId] = { ref: name, attributes: { Arn: out.EventBusArn!, Name: name } };
    }
  });

  afterAll(async () => {
    setBroker(undefined);
    await local?.close();
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
    if (taskRoot) rmSync(taskRoot, { recursive: true, force: true });
    for (const client of [dynamo, kms, secretsManager, eventBridge]) client.destroy();
  });

  /**
   * Runs a handler as Lambda would in a fresh container with this function's template
   * environment (References resolved to the moto resources), the AWS SDK pointed at moto.
   */
  async function runAsDeployed<T>(
    functionId: string,
    invoke: (context: ReturnType<typeof lambdaContext>) => Promise<T>,
  ): Promise<{ result: T; output: string; environment: Record<string, string> }> {
    const properties = template.Resources[functionId]!.Properties as {
      FunctionName: string;
      Timeout: number;
      Environment: { Variables: Record<string, unknown> };
    };
    const environment = Object.fromEntries(
      Object.entries(properties.Environment.Variables).map(([name, value]) => [
        name,
        resolveValue(value, physical),
      ]),
    );
    const runtime = {
      AWS_ENDPOINT_URL: motoUrl,
      AWS_REGION: region,
      AWS_ACCESS_KEY_ID: 'x',
      AWS_SECRET_ACCESS_KEY: 'x',
      AWS_LAMBDA_FUNCTION_NAME: properties.FunctionName,
      LAMBDA_TASK_ROOT: taskRoot,
      // Environment "sandbox" resolves here: the offline runtime's sandboxes (only a test sets it).
      BROKER_SANDBOX_URL: `${local.url}/sandbox`,
    };
    const saved = { ...process.env };
    const { NODE_OPTIONS: _nodeOptions, ...applied } = environment; // for a new process only
    Object.assign(process.env, applied, runtime);
    setBroker(undefined); // a cold container: the broker is built from this environment
    try {
      const { result, output } = await captureOutput(() =>
        invoke(lambdaContext(properties.FunctionName, properties.Timeout * 1000)),
      );
      return { result, output, environment };
    } finally {
      setBroker(undefined);
      for (const name of Object.keys(process.env)) if (!(name in saved)) delete process.env[name];
      Object.assign(process.env, saved);
    }
  }

  const logLines = (output: string) =>
    output
      .split('\n')
      .filter((line) => line.startsWith('{'))
      .map((line) => JSON.parse(line) as Record<string, unknown>);

  /** The EMF lines (Powertools Metrics) in a run's output that carry this metric. */
  const emf = (output: string, metric: string) =>
    logLines(output).filter((line) => '_aws' in line && metric in line) as (Record<
      string,
      unknown
    > & { _aws: unknown })[];

  let firstToken: string;

  it('token: fetches a Quidkey token through KMS, DynamoDB, Secrets Manager and EventBridge', async () => {
    const { result, output, environment } = await runAsDeployed(ids.token, (context) =>
      tokenHandler({ provider: 'quidkey' }, context),
    );
    expect(environment.BROKER_TABLE_NAME).toBe(tableName);
    expect(environment.BROKER_KMS_KEY_ID).toBe(physical[ids.key]!.attributes.Arn);
    expect(environment.BROKER_EVENT_BUS).toMatch(/^oauth-token-broker-moto-/);
    expect(result).toMatchObject({ ok: true, provider: 'quidkey', tokenType: 'Bearer' });
    const answer = result as { accessToken: string; authorization: string };
    firstToken = answer.accessToken;
    const me = await fetch(`${local.url}/sandbox/quidkey/api/v1/me`, {
      headers: { authorization: answer.authorization },
    });
    expect(me.status).toBe(200);
    expect(local.sandboxes.quidkey.callCount('token')).toBeGreaterThanOrEqual(1);
    // Its lifecycle event (Connection Created) went to the template's bus without an error.
    expect(output).not.toContain('lifecycle event not published');
    expect(output).not.toContain(firstToken);
    // Its answer counted (EMF) where the internal_error alarm looks: the template's namespace.
    expect(emf(output, 'TokenAnswers')).toEqual([
      expect.objectContaining({ code: 'ok', service: 'oauth-token-broker', TokenAnswers: 1 }),
    ]);
    expect(emf(output, 'TokenAnswers')[0]!._aws).toMatchObject({
      CloudWatchMetrics: [{ Namespace: environment.POWERTOOLS_METRICS_NAMESPACE }],
    });
    expect(environment.POWERTOOLS_METRICS_NAMESPACE).toBe('oauth-token-broker/moto');
    // The first mint counted as a renewal of its provider.
    expect(emf(output, 'Renewals')).toEqual([
      expect.objectContaining({ provider: 'quidkey', outcome: 'renewed', Renewals: 1 }),
    ]);

    // The item in moto holds the tokens only as an envelope, wrapped by the moto KMS key.
    const item = (
      await dynamo.send(
        new GetItemCommand({
          TableName: tableName,
          Key: { pk: { S: 'connection#quidkey#default' } },
          ConsistentRead: true,
        }),
      )
    ).Item!;
    expect(item.tokens!.S).toMatch(/^v2\.[\w-]+\.[\w-]+\.[\w-]+$/);
    const raw = JSON.stringify(item);
    expect(raw).not.toContain(firstToken);
    expect(Object.keys(item)).not.toEqual(
      expect.arrayContaining([expect.stringMatching(/^(accessToken|refreshToken|tokenSecret)$/)]),
    );
    expect(item).toMatchObject({ version: { N: '1' }, dueShard: { S: expect.any(String) } });
  });

  it('refresher: finds the connection in the due index and renews it', async () => {
    expect(firstToken).toBeDefined();
    const refreshesBefore = local.sandboxes.quidkey.callCount('refresh');
    const { result, output } = await runAsDeployed(ids.refresher, (context) =>
      refresherHandler({ source: 'aws.events', 'detail-type': 'Scheduled Event' }, context),
    );
    expect(result).toMatchObject({ due: 1, refreshed: 1, failed: 0, needsReauth: 0, skipped: 0 });
    expect(local.sandboxes.quidkey.callCount('refresh')).toBe(refreshesBefore + 1);
    // The summary line the RefreshFailures metric filter reads ({ $.message = … }, $.failed).
    const summary = logLines(output).find((line) => line.message === refresherSummaryMessage);
    expect(summary).toMatchObject({ level: 'INFO', failed: 0, refreshed: 1 });
    // The heartbeat the refresher-heartbeat alarm waits for, with the run's figures.
    expect(emf(output, 'RefresherRuns')).toEqual([
      expect.objectContaining({ RefresherRuns: 1, RefresherDue: 1, RefresherRefreshed: 1 }),
    ]);
    expect(emf(output, 'Renewals')).toEqual([
      expect.objectContaining({ provider: 'quidkey', outcome: 'renewed', Renewals: 1 }),
    ]);
    expect(output).not.toContain('lifecycle event not published');

    const item = (
      await dynamo.send(
        new GetItemCommand({
          TableName: tableName,
          Key: { pk: { S: 'connection#quidkey#default' } },
          ConsistentRead: true,
        }),
      )
    ).Item!;
    expect(item.version).toEqual({ N: '2' });
    expect(JSON.stringify(item)).not.toContain(firstToken);
    // The renewed token is served, still only from the envelope.
    const { result: again } = await runAsDeployed(ids.token, (context) =>
      tokenHandler({ provider: 'quidkey' }, context),
    );
    expect((again as { accessToken: string }).accessToken).not.toBe(firstToken);
    expect(JSON.stringify(item)).not.toContain((again as { accessToken: string }).accessToken);
  });
});
