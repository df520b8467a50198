import { Annotations, Match, type Template } from 'aws-cdk-lib/assertions';
import type { CfnKey } from 'aws-cdk-lib/aws-kms';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig, parseConfig } from '../../shared/config.ts';
import { providerKinds } from '../../shared/providers/registry.ts';
import {
  removeSynthOutputs,
  resourcesOfType,
  synthBroker,
  type SynthesizedBroker,
} from './synth.ts';

afterAll(removeSynthOutputs);

interface Statement {
  Effect: string;
  Action: string | string[];
  Resource: unknown;
  Condition?: Record<string, Record<string, unknown>>;
}

/** Every statement of every identity policy in the template (inline, attached or managed). */
function identityStatements(template: Template): Statement[] {
  const documents: { Statement: Statement[] }[] = [];
  for (const policy of Object.values(resourcesOfType(template, 'AWS::IAM::Policy'))) {
    documents.push(
      (policy.Properties as { PolicyDocument: { Statement: Statement[] } }).PolicyDocument,
    );
  }
  for (const policy of Object.values(resourcesOfType(template, 'AWS::IAM::ManagedPolicy'))) {
    documents.push(
      (policy.Properties as { PolicyDocument: { Statement: Statement[] } }).PolicyDocument,
    );
  }
  for (const role of Object.values(resourcesOfType(template, 'AWS::IAM::Role'))) {
    const inline = (
      role.Properties as { Policies?: { PolicyDocument: { Statement: Statement[] } }[] }
    ).Policies;
    for (const policy of inline ?? []) documents.push(policy.PolicyDocument);
  }
  return documents.flatMap((document) => document.Statement);
}

const actionsOf = (statement: Statement) =>
  Array.isArray(statement.Action) ? statement.Action : [statement.Action];

const refersTo = (value: unknown, logicalId: string) =>
  JSON.stringify(value).includes(`"${logicalId}"`);

/** A `Fn::Join` resolved with `standIn` for each intrinsic, e.g. the API's endpoint. */
function joined(value: unknown, standIn: string): string {
  if (typeof value === 'string') return value;
  const [, parts] = (value as { 'Fn::Join': [string, unknown[]] })['Fn::Join'];
  return parts.map((part) => (typeof part === 'string' ? part : standIn)).join('');
}

function functionEnvironments(template: Template): Record<string, unknown>[] {
  return Object.values(resourcesOfType(template, 'AWS::Lambda::Function')).map(
    (fn) =>
      (fn.Properties as { Environment?: { Variables?: Record<string, unknown> } }).Environment
        ?.Variables ?? {},
  );
}

describe('BrokerStack (stage prod)', () => {
  let prod: SynthesizedBroker;
  let template: Template;
  let keyId: string;
  let tableId: string;
  beforeAll(() => {
    prod = synthBroker({ stage: 'prod' });
    template = prod.template;
    keyId = prod.stack.getLogicalId(prod.stack.key.node.defaultChild as CfnKey);
    tableId = prod.stack.getLogicalId(prod.stack.table.node.defaultChild as never);
  });

  it('encrypts the token table with the customer managed key, with PITR and TTL on', () => {
    template.hasResourceProperties('AWS::DynamoDB::Table', {
      KeySchema: [{ AttributeName: 'pk', KeyType: 'HASH' }],
      AttributeDefinitions: [{ AttributeName: 'pk', AttributeType: 'S' }],
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

  it('keeps the table when the stack lets go of it, and protects it from deletion', () => {
    template.hasResource('AWS::DynamoDB::Table', {
      DeletionPolicy: 'Retain',
      UpdateReplacePolicy: 'Retain',
      Properties: Match.objectLike({ DeletionProtectionEnabled: true }),
    });
    template.hasResource('AWS::KMS::Key', { DeletionPolicy: 'Retain' });
  });

  it('rotates the key and names it after the stage', () => {
    template.hasResourceProperties('AWS::KMS::Key', { EnableKeyRotation: true });
    template.hasResourceProperties('AWS::KMS::Alias', {
      AliasName: 'alias/oauth-token-broker-prod',
      TargetKeyId: { 'Fn::GetAtt': [keyId, 'Arn'] },
    });
  });

  it('grants no wildcard action in any identity policy', () => {
    const statements = identityStatements(template);
    expect(statements.length).toBeGreaterThan(0);
    const wildcards = statements.flatMap(actionsOf).filter((action) => action.includes('*'));
    expect(wildcards).toEqual([]);
  });

  it('lets the token function do only GetItem, PutItem and UpdateItem on the table', () => {
    const onTable = identityStatements(template).filter((s) => refersTo(s.Resource, tableId));
    expect(onTable.flatMap(actionsOf).sort()).toEqual([
      'dynamodb:GetItem',
      'dynamodb:PutItem',
      'dynamodb:UpdateItem',
    ]);
  });

  it('binds the direct key grant to the token envelopes and the rest to DynamoDB', () => {
    const onKey = identityStatements(template).filter((s) => refersTo(s.Resource, keyId));
    const direct = onKey.filter((s) => !s.Condition?.StringEquals?.['kms:ViaService']);
    expect(direct).toEqual([
      expect.objectContaining({
        Action: ['kms:Decrypt', 'kms:GenerateDataKey'],
        Condition: { StringEquals: { 'kms:EncryptionContext:purpose': 'connection-tokens' } },
      }),
    ]);
    // Every other statement on the key only works through DynamoDB (encryption at rest).
    const viaDynamo = onKey.filter((s) => s.Condition?.StringEquals?.['kms:ViaService']);
    expect(
      viaDynamo.map((s) => joined(s.Condition!.StringEquals!['kms:ViaService'], 'REGION')),
    ).toEqual(['dynamodb.REGION.amazonaws.com']);
    expect(onKey).toHaveLength(direct.length + viaDynamo.length);
  });

  it('lets the token function read the value of its providers’ secrets and no other', () => {
    const secretIds = Object.keys(resourcesOfType(template, 'AWS::SecretsManager::Secret')).sort();
    expect(secretIds).toHaveLength(Object.keys(loadConfig().providers).length);
    const onSecrets = identityStatements(template).filter((s) =>
      actionsOf(s).some((action) => action.startsWith('secretsmanager:')),
    );
    expect(onSecrets).toHaveLength(1);
    expect(actionsOf(onSecrets[0]!)).toEqual(['secretsmanager:GetSecretValue']);
    const resources = (onSecrets[0]!.Resource as { Ref: string }[]).map((r) => r.Ref).sort();
    expect(resources).toEqual(secretIds);
  });

  it('creates one placeholder secret per provider, never a value', () => {
    for (const [providerId, { kind }] of Object.entries(loadConfig().providers)) {
      // In the shape the kind reads: client_id/client_secret, api_key/api_secret, …
      const [idField, secretField] = providerKinds[kind]!.secretFields;
      template.hasResourceProperties('AWS::SecretsManager::Secret', {
        Name: `oauth-token-broker/${providerId}`,
        SecretString: Match.absent(),
        GenerateSecretString: Match.objectLike({
          SecretStringTemplate: JSON.stringify({ [idField!]: 'REPLACE_ME' }),
          GenerateStringKey: secretField,
        }),
      });
    }
  });

  it('puts no secret value in any function environment', () => {
    const environments = functionEnvironments(template);
    expect(environments.length).toBeGreaterThan(0);
    for (const environment of environments) {
      const names = Object.keys(environment);
      const suggestsValue = names.filter(
        (name) =>
          /SECRET|PASSWORD|PASSWD|PRIVATE|CREDENTIAL|API_?KEY|ACCESS_?KEY|TOKEN/i.test(name) &&
          !/_(PREFIX|NAME|ARN|ID)$/.test(name),
      );
      expect(suggestsValue).toEqual([]);
      const text = JSON.stringify(environment);
      for (const marker of ['REPLACE_ME', 'client_secret']) {
        expect(text).not.toContain(marker);
      }
    }
  });

  it('builds the token function with the house defaults and its environment', () => {
    template.hasResourceProperties('AWS::Lambda::Function', {
      FunctionName: 'oauth-token-broker-prod-token',
      Runtime: 'nodejs22.x',
      Architectures: ['arm64'],
      MemorySize: 256,
      Timeout: 30,
      Handler: 'index.handler',
      LoggingConfig: { LogGroup: { Ref: Match.anyValue() } },
      Environment: {
        Variables: Match.objectLike({
          BROKER_MODE: 'aws',
          BROKER_TABLE_NAME: { Ref: tableId },
          BROKER_KMS_KEY_ID: { 'Fn::GetAtt': [keyId, 'Arn'] },
          BROKER_SECRETS_PREFIX: 'oauth-token-broker',
          POWERTOOLS_SERVICE_NAME: 'oauth-token-broker',
          NODE_OPTIONS: '--enable-source-maps',
        }),
      },
    });
    const fn = Object.values(resourcesOfType(template, 'AWS::Lambda::Function'))[0]!;
    const logGroupId = (fn.Properties as { LoggingConfig: { LogGroup: { Ref: string } } })
      .LoggingConfig.LogGroup.Ref;
    expect(template.toJSON().Resources[logGroupId]).toMatchObject({
      Type: 'AWS::Logs::LogGroup',
      Properties: { RetentionInDays: 30 },
    });
    // Its own role: no AWS managed policy (AWSLambdaBasicExecutionRole logs:CreateLogGroup on *).
    template.hasResourceProperties('AWS::IAM::Role', { ManagedPolicyArns: Match.absent() });
  });

  it('hands the function a config that validates, with the API as its public URL', () => {
    const [environment] = functionEnvironments(template);
    const text = joined(environment!.BROKER_CONFIG_JSON, 'https://api.example');
    const config = parseConfig(JSON.parse(text), 'BROKER_CONFIG_JSON');
    expect(Object.keys(config.providers)).toEqual(Object.keys(loadConfig().providers));
    expect(config.publicBaseUrl).toBe('https://api.example');
    expect(config.$schema).toBeUndefined();
  });

  it('serves an HTTP API stage with throttling and access logs', () => {
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
        Format: Match.stringLikeRegexp('\\$context\\.requestId'),
      },
    });
    template.resourceCountIs('AWS::ApiGatewayV2::DomainName', 0);
  });

  it('outputs the API URL, the function, the table and each provider’s callback URL', () => {
    const outputs = template.toJSON().Outputs as Record<string, { Value: unknown }>;
    expect(Object.keys(outputs)).toEqual(
      expect.arrayContaining(['ApiUrl', 'TokenFunctionName', 'TokenFunctionArn', 'TableName']),
    );
    expect(outputs.TableName!.Value).toEqual({ Ref: tableId });
    for (const providerId of Object.keys(loadConfig().providers)) {
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

  it('serves the API on the custom domain and builds callback URLs from it', () => {
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
    expect(outputs.CallbackUrlQuidkey!.Value).toBe('https://broker.example.com/callback/quidkey');
    expect(outputs.ApiDomainTarget).toBeDefined();
  });

  it('refuses a malformed stage or half a custom domain', () => {
    expect(() => synthBroker({ stage: 'Prod!' }, { bundle: false })).toThrow(/context stage/);
    expect(() => synthBroker({ domainName: 'broker.example.com' }, { bundle: false })).toThrow(
      /both domainName and certificateArn/,
    );
  });
});
