import { fileURLToPath } from 'node:url';
import {
  Annotations,
  CfnOutput,
  Duration,
  RemovalPolicy,
  Stack,
  type StackProps,
} from 'aws-cdk-lib';
import { AccessLogFormat } from 'aws-cdk-lib/aws-apigateway';
import {
  DomainName,
  HttpApi,
  LogGroupLogDestination,
  type HttpStage,
} from 'aws-cdk-lib/aws-apigatewayv2';
import { Certificate } from 'aws-cdk-lib/aws-certificatemanager';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import { NagSuppressions } from 'cdk-nag';
import type { Construct } from 'constructs';
import type { BrokerConfig } from '../shared/config.ts';
import { providerKinds } from '../shared/providers/registry.ts';
import { tokensContext } from '../shared/store/connection-store.ts';
import { tableKey, ttlAttribute } from '../shared/store/table.ts';
import { BrokerFunction } from './broker-function.ts';
import { bindEnvelopeKey, bindSecretValues, bindTable } from './grants.ts';

export interface CustomDomain {
  domainName: string;
  /** An ACM certificate for domainName in the stack's region. */
  certificateArn: string;
}

export interface BrokerStackProps extends StackProps {
  /** dev, staging, prod…: names the key alias and the functions; `dev` may be torn down. */
  stage: string;
  /** The validated broker.config.json (shared/config.ts loadConfig). */
  config: BrokerConfig;
  customDomain?: CustomDomain;
}

/** Stays well inside Lambda's 4 KB for all of a function's environment variables together. */
const maxConfigEnvBytes = 3072;

/** The purpose in the token envelopes' encryption context, which the key grant is bound to. */
const tokenEnvelopePurpose = tokensContext('', '').purpose;

/**
 * The broker in one stack: the token table and its key, one secret per provider, the `token`
 * function, and the HTTP API the connect/callback routes will hang off. Environment-agnostic (no
 * account or region lookups), so `cdk synth` works offline without credentials.
 */
export class BrokerStack extends Stack {
  readonly key: kms.Key;
  readonly table: dynamodb.Table;
  readonly providerSecrets: ReadonlyMap<string, secretsmanager.Secret>;
  readonly tokenFunction: BrokerFunction;
  /**
   * The HTTP API, with no routes yet. The connect and callback routes arrive with their handlers:
   * `api.addRoutes({ path: '/callback/{provider}', methods: [HttpMethod.GET], integration: new
   * HttpLambdaIntegration(…) })`. The stage, throttling and access logs below already apply.
   */
  readonly api: HttpApi;
  readonly apiStage: HttpStage;
  /** Where the API is reached from outside: the custom domain, else the execute-api endpoint. */
  readonly apiUrl: string;

  constructor(scope: Construct, id: string, props: BrokerStackProps) {
    super(scope, id, props);
    const { stage, config } = props;
    const disposable = stage === 'dev';
    const removalPolicy = disposable ? RemovalPolicy.DESTROY : RemovalPolicy.RETAIN;

    this.key = new kms.Key(this, 'TokenKey', {
      description: `oauth-token-broker ${stage}: token envelopes and the token table at rest`,
      alias: `alias/oauth-token-broker-${stage}`,
      enableKeyRotation: true,
      removalPolicy,
      ...(disposable ? { pendingWindow: Duration.days(7) } : {}),
    });

    this.table = new dynamodb.Table(this, 'TokenTable', {
      partitionKey: { name: tableKey.partitionKey, type: dynamodb.AttributeType.STRING },
      billingMode: dynamodb.BillingMode.PAY_PER_REQUEST,
      encryption: dynamodb.TableEncryption.CUSTOMER_MANAGED,
      encryptionKey: this.key,
      pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
      timeToLiveAttribute: ttlAttribute,
      deletionProtection: !disposable,
      removalPolicy,
    });

    const sandboxed = Object.entries(config.providers)
      .filter(([, provider]) => provider.environment === 'sandbox' && !provider.baseUrl)
      .map(([providerId]) => providerId);
    if (sandboxed.length > 0) {
      Annotations.of(this).addWarningV2(
        'oauth-token-broker:sandboxProviders',
        `Providers ${sandboxed.join(', ')} use environment "sandbox", which only the offline runtime (npm start) serves; set their environment or baseUrl in broker.config.json for a deployment that calls real providers.`,
      );
    }

    const secrets = new Map<string, secretsmanager.Secret>();
    for (const [providerId, provider] of Object.entries(config.providers)) {
      secrets.set(
        providerId,
        this.providerSecret(config.secretsPrefix, providerId, provider.kind, removalPolicy),
      );
    }
    this.providerSecrets = secrets;

    const { api, stage: apiStage, domain } = this.httpApi(stage, removalPolicy, props.customDomain);
    this.api = api;
    this.apiStage = apiStage;
    this.apiUrl = props.customDomain ? `https://${props.customDomain.domainName}` : api.apiEndpoint;
    const publicBaseUrl = config.publicBaseUrl?.replace(/\/+$/, '') ?? this.apiUrl;

    this.tokenFunction = new BrokerFunction(this, 'TokenFunction', {
      functionName: `oauth-token-broker-${stage}-token`,
      description: 'Serves a valid OAuth token for a provider connection (Lambda invoke)',
      entry: fileURLToPath(new URL('../functions/token.ts', import.meta.url)),
      logRemovalPolicy: removalPolicy,
      environment: {
        BROKER_MODE: 'aws',
        BROKER_CONFIG_JSON: this.configEnvironmentValue(config, publicBaseUrl),
        BROKER_TABLE_NAME: this.table.tableName,
        BROKER_KMS_KEY_ID: this.key.keyArn,
        // Secret names only; the function reads the values at run time.
        BROKER_SECRETS_PREFIX: config.secretsPrefix,
        POWERTOOLS_SERVICE_NAME: 'oauth-token-broker',
      },
    });
    bindTable(this.tokenFunction, this.table, [
      'dynamodb:GetItem',
      'dynamodb:PutItem',
      'dynamodb:UpdateItem',
    ]);
    bindEnvelopeKey(this.tokenFunction, this.key, tokenEnvelopePurpose);
    bindSecretValues(this.tokenFunction, [...secrets.values()]);
    NagSuppressions.addResourceSuppressions(this.tokenFunction, [
      {
        id: 'AwsSolutions-L1',
        reason:
          'Pinned to nodejs22.x, the runtime the handlers are built and tested for; moving to a newer runtime is a deliberate change with its own test run, not an automatic one.',
      },
    ]);

    new CfnOutput(this, 'ApiUrl', { value: this.apiUrl, description: 'Base URL of the HTTP API' });
    new CfnOutput(this, 'TokenFunctionName', {
      value: this.tokenFunction.functionName,
      description: 'Invoke this with TokenBrokerClient (functionName)',
    });
    new CfnOutput(this, 'TokenFunctionArn', { value: this.tokenFunction.functionArn });
    new CfnOutput(this, 'TableName', { value: this.table.tableName });
    for (const providerId of Object.keys(config.providers)) {
      new CfnOutput(this, `CallbackUrl${pascalCase(providerId)}`, {
        value: `${publicBaseUrl}/callback/${providerId}`,
        description: `Redirect URI to register with ${providerId}`,
      });
    }
    if (domain && props.customDomain) {
      new CfnOutput(this, 'ApiDomainTarget', {
        value: domain.regionalDomainName,
        description: `Point a CNAME (or alias) record for ${props.customDomain.domainName} here`,
      });
    }
  }

  /**
   * One secret per provider, `<secretsPrefix>/<providerId>`, created with placeholder values in the
   * shape the provider's kind reads (its secretFields). The real values are set out of band
   * (docs/deployment.md) and are never in code, the template or the function's environment.
   */
  private providerSecret(
    prefix: string,
    providerId: string,
    kind: string,
    removalPolicy: RemovalPolicy,
  ): secretsmanager.Secret {
    const fields = providerKinds[kind]?.secretFields ?? ['client_id', 'client_secret'];
    const generated = fields.at(-1) ?? 'client_secret';
    const placeholders = Object.fromEntries(
      fields.filter((field) => field !== generated).map((field) => [field, 'REPLACE_ME']),
    );
    const secret = new secretsmanager.Secret(this, `ProviderSecret${pascalCase(providerId)}`, {
      secretName: `${prefix}/${providerId}`,
      description: `OAuth client credentials for provider ${providerId} (placeholder until set; see docs/deployment.md)`,
      generateSecretString: {
        secretStringTemplate: JSON.stringify(placeholders),
        generateStringKey: generated,
        excludePunctuation: true,
      },
      removalPolicy,
    });
    NagSuppressions.addResourceSuppressions(secret, [
      {
        id: 'AwsSolutions-SMG4',
        reason:
          'Third-party OAuth client credentials: the provider issues them, so Secrets Manager cannot rotate them; they are replaced with put-secret-value when the provider rotates them.',
      },
    ]);
    return secret;
  }

  /** The HTTP API with its one `$default` stage: throttled, access-logged, optionally on a domain. */
  private httpApi(
    stage: string,
    removalPolicy: RemovalPolicy,
    customDomain: CustomDomain | undefined,
  ): { api: HttpApi; stage: HttpStage; domain?: DomainName } {
    const api = new HttpApi(this, 'HttpApi', {
      apiName: `oauth-token-broker-${stage}`,
      description: 'oauth-token-broker consent flows (connect, callback)',
      createDefaultStage: false,
    });
    const accessLogs = new logs.LogGroup(this, 'HttpApiAccessLogs', {
      retention: logs.RetentionDays.ONE_MONTH,
      removalPolicy,
    });
    const domain = customDomain
      ? new DomainName(this, 'HttpApiDomain', {
          domainName: customDomain.domainName,
          certificate: Certificate.fromCertificateArn(
            this,
            'HttpApiCertificate',
            customDomain.certificateArn,
          ),
        })
      : undefined;
    const apiStage = api.addStage('DefaultStage', {
      stageName: '$default',
      autoDeploy: true,
      // A handful of people go through a consent flow at a time; this only caps abuse.
      throttle: { rateLimit: 20, burstLimit: 40 },
      accessLogSettings: {
        destination: new LogGroupLogDestination(accessLogs),
        // HTTP API variables (docs: http-api-logging-variables). The route and path only, never the
        // query string: callbacks carry the authorization `code` and `state`.
        format: AccessLogFormat.custom(
          JSON.stringify({
            requestId: '$context.requestId',
            time: '$context.requestTime',
            ip: '$context.identity.sourceIp',
            method: '$context.httpMethod',
            routeKey: '$context.routeKey',
            path: '$context.path',
            status: '$context.status',
            responseLength: '$context.responseLength',
            latencyMs: '$context.responseLatency',
            integrationError: '$context.integrationErrorMessage',
          }),
        ),
      },
      ...(domain ? { domainMapping: { domainName: domain } } : {}),
    });
    return { api, stage: apiStage, ...(domain ? { domain } : {}) };
  }

  /**
   * The validated configuration as the function reads it (BROKER_CONFIG_JSON), with the public
   * URL set so callback URLs match the outputs. It holds no secrets: those are named by provider
   * id and read from Secrets Manager.
   */
  private configEnvironmentValue(config: BrokerConfig, publicBaseUrl: string): string {
    const { $schema: _schema, ...rest } = config;
    const value = this.toJsonString({ ...rest, publicBaseUrl });
    const size = Buffer.byteLength(JSON.stringify({ ...rest, publicBaseUrl: 'x'.repeat(120) }));
    if (size > maxConfigEnvBytes) {
      throw new Error(
        `broker.config.json is ${size} bytes as JSON, more than the ${maxConfigEnvBytes} that fit in a Lambda environment variable; bundle it with the function instead.`,
      );
    }
    return value;
  }
}

function pascalCase(id: string): string {
  return id
    .split(/[^A-Za-z0-9]+/)
    .filter(Boolean)
    .map((part) => part[0]!.toUpperCase() + part.slice(1))
    .join('');
}
