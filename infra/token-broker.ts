import { readFileSync } from 'node:fs';
import { Annotations, Duration, RemovalPolicy } from 'aws-cdk-lib';
import { AccessLogFormat } from 'aws-cdk-lib/aws-apigateway';
import {
  DomainName,
  HttpApi,
  HttpMethod,
  LogGroupLogDestination,
  type HttpStage,
} from 'aws-cdk-lib/aws-apigatewayv2';
import { HttpLambdaIntegration } from 'aws-cdk-lib/aws-apigatewayv2-integrations';
import { Certificate } from 'aws-cdk-lib/aws-certificatemanager';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as events from 'aws-cdk-lib/aws-events';
import * as targets from 'aws-cdk-lib/aws-events-targets';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { SqsDestination } from 'aws-cdk-lib/aws-lambda-destinations';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import * as ssm from 'aws-cdk-lib/aws-ssm';
import { NagSuppressions } from 'cdk-nag';
import { Construct } from 'constructs';
import { parseConfig, type BrokerConfig } from '../shared/config.ts';
import { eventSource } from '../shared/events.ts';
import { protocolOf } from '../shared/providers/protocols.ts';
import { hasConsentFlow } from '../shared/providers/types.ts';
import { refresherTimeoutSeconds } from '../shared/refresher.ts';
import { SECRET_PLACEHOLDER } from '../shared/secrets.ts';
import { dueIndex, providerIndex, tableKey, ttlAttribute } from '../shared/store/table.ts';
import { BrokerFunction } from './broker-function.ts';
import type { BrokerFunctionName } from './function-names.ts';
import {
  brokerFunctionNames,
  brokerFunctions,
  type BrokerFunctionSpec,
  type FunctionTrigger,
} from './functions.ts';
import {
  bindEnvelopeKey,
  bindIndexQueries,
  bindPutEvents,
  bindSecretValues,
  bindTableItems,
  bindTableKeyAtRest,
  envelopeKeyPolicy,
  tableKeyPolicy,
} from './grants.ts';
import { BrokerMonitoring, metricsNamespaceFor } from './monitoring.ts';

export interface CustomDomain {
  domainName: string;
  /** An ACM certificate for domainName in the stack's region. */
  certificateArn: string;
}

export interface TokenBrokerProps {
  /** dev, staging, prod…: names the key alias, the functions and the parameters. */
  stage: string;
  /**
   * The broker configuration (broker.config.json): the parsed object, or the path of the file.
   * Validated at synth (a bad key fails `cdk synth` with its name); it travels to the functions
   * as a file in their code asset, of any size.
   */
  config: Record<string, unknown> | string;
  customDomain?: CustomDomain;
  /**
   * Administers the token key (rotation, policy, deletion) and never uses it: no Decrypt, no
   * GenerateDataKey. Default: the account, for administrative actions only.
   */
  keyAdmin?: iam.IPrincipal;
  /** X-Ray tracing of every function (Powertools Tracer). Default true. */
  tracing?: boolean;
  /**
   * Reserved concurrency of each public route's function (connect-start, connect-callback): caps
   * what a flood of browser requests can take of the account's concurrency. Default 10.
   */
  publicRouteConcurrency?: number;
  /** Where the SSM parameters with the function ARNs go. Default `/oauth-token-broker/<stage>`. */
  parameterPrefix?: string;
  /** Default: DESTROY for stage `dev`, RETAIN (and table deletion protection) otherwise. */
  removalPolicy?: RemovalPolicy;
}

const stagePattern = /^[a-z][a-z0-9-]{0,19}$/;

/** Provider ids whose kind has a consent flow (a callback URL to register at the provider). */
function consentProviderIds(config: BrokerConfig): string[] {
  return Object.entries(config.providers)
    .filter(([, provider]) => hasConsentFlow(protocolOf(provider)))
    .map(([providerId]) => providerId);
}

/**
 * The whole broker as one construct: the token table and its key, one secret per provider, the
 * five functions of the catalog (infra/functions.ts), the HTTP API with the consent-flow routes,
 * the refresher's schedule with its dead-letter queue, the lifecycle event bus, SSM parameters
 * with the function ARNs, and alarms and a dashboard. Environment-agnostic (no account or region
 * lookups), so `cdk synth` works offline without credentials.
 */
export class TokenBroker extends Construct {
  readonly stage: string;
  /** The validated configuration as each function's asset ships it (broker.config.json). */
  readonly configJson: string;
  readonly key: kms.Key;
  readonly table: dynamodb.Table;
  readonly providerSecrets: ReadonlyMap<string, secretsmanager.Secret>;
  readonly functions: Readonly<Record<BrokerFunctionName, lambda.Function>>;
  /** Invoked by services for tokens (grantFetchToken). */
  readonly tokenFunction: lambda.Function;
  /** Invoked by the team's backend: connect sessions, get, list, delete (grantManageConnections). */
  readonly connectionsFunction: lambda.Function;
  readonly refresherFunction: lambda.Function;
  /** Lifecycle events (shared/events.ts), `source: "oauth-token-broker"`. */
  readonly eventBus: events.EventBus;
  /** Scheduled refresher runs that could not be delivered or failed after their retries. */
  readonly refresherDeadLetterQueue: sqs.Queue;
  readonly monitoring: BrokerMonitoring;
  /** The HTTP API: `GET /connect/{provider}` and `GET /callback/{provider}`. */
  readonly api: HttpApi;
  readonly apiStage: HttpStage;
  /** Where the API is reached from outside: the custom domain, else the execute-api endpoint. */
  readonly apiUrl: string;
  /** The base of the connect and callback URLs (publicBaseUrl, else apiUrl). */
  readonly publicBaseUrl: string;
  /** Provider id → the redirect URI to register with it, for each provider with a consent flow. */
  readonly callbackUrls: Readonly<Record<string, string>>;
  /** The SSM parameter names holding the function ARNs, for consumers in other stacks/accounts. */
  readonly parameterNames: Readonly<{ tokenFunctionArn: string; connectionsFunctionArn: string }>;
  /** The custom domain's API Gateway domain, when one is set. */
  readonly domain: DomainName | undefined;

  constructor(scope: Construct, id: string, props: TokenBrokerProps) {
    super(scope, id);
    const { stage } = props;
    if (!stagePattern.test(stage)) {
      throw new Error(
        `TokenBroker stage: "${stage}" must match ${stagePattern} (it names the key alias and the functions)`,
      );
    }
    this.stage = stage;
    const config = readConfig(props.config);
    const disposable = stage === 'dev';
    const removalPolicy =
      props.removalPolicy ?? (disposable ? RemovalPolicy.DESTROY : RemovalPolicy.RETAIN);
    const retained = removalPolicy === RemovalPolicy.RETAIN;
    const tracing = props.tracing ?? true;

    // No default policy: the account gets administration only (keyAdmin), the broker's roles the
    // envelope use, and DynamoDB the table's at-rest use (grants.ts: envelopeKeyPolicy, …).
    this.key = new kms.Key(this, 'TokenKey', {
      description: `oauth-token-broker ${stage}: token envelopes and the token table at rest`,
      alias: `alias/oauth-token-broker-${stage}`,
      enableKeyRotation: true,
      removalPolicy,
      policy: new iam.PolicyDocument({
        statements: [
          new iam.PolicyStatement({
            sid: 'KeyAdministration',
            principals: [props.keyAdmin ?? new iam.AccountRootPrincipal()],
            actions: [...keyAdminActions],
            resources: ['*'],
          }),
          tableKeyPolicy(),
        ],
      }),
      ...(disposable ? { pendingWindow: Duration.days(7) } : {}),
    });

    this.table = new dynamodb.Table(this, 'TokenTable', {
      partitionKey: { name: tableKey.partitionKey, type: dynamodb.AttributeType.STRING },
      billingMode: dynamodb.BillingMode.PAY_PER_REQUEST,
      encryption: dynamodb.TableEncryption.CUSTOMER_MANAGED,
      encryptionKey: this.key,
      pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
      timeToLiveAttribute: ttlAttribute,
      deletionProtection: retained,
      removalPolicy,
    });
    // The indexes as shared/store/table.ts defines them (createTableInput builds the same offline).
    this.table.addGlobalSecondaryIndex({
      indexName: dueIndex.name,
      partitionKey: { name: dueIndex.partitionKey, type: dynamodb.AttributeType.STRING },
      sortKey: { name: dueIndex.sortKey, type: dynamodb.AttributeType.NUMBER },
      projectionType: dynamodb.ProjectionType.ALL,
    });
    this.table.addGlobalSecondaryIndex({
      indexName: providerIndex.name,
      partitionKey: { name: providerIndex.partitionKey, type: dynamodb.AttributeType.STRING },
      sortKey: { name: providerIndex.sortKey, type: dynamodb.AttributeType.STRING },
      projectionType: dynamodb.ProjectionType.INCLUDE,
      nonKeyAttributes: [...providerIndex.projectedAttributes],
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
      // api_key / basic providers have no client secret: their credentials are the connection's.
      if (protocolOf(provider).secretFields.length === 0) continue;
      secrets.set(
        providerId,
        this.providerSecret(config.secretsPrefix, providerId, provider, removalPolicy),
      );
    }
    this.providerSecrets = secrets;

    const { api, stage: apiStage, domain } = this.httpApi(stage, removalPolicy, props.customDomain);
    this.api = api;
    this.apiStage = apiStage;
    this.domain = domain;
    this.apiUrl = props.customDomain ? `https://${props.customDomain.domainName}` : api.apiEndpoint;
    const publicBaseUrl = config.publicBaseUrl?.replace(/\/+$/, '') ?? this.apiUrl;
    this.publicBaseUrl = publicBaseUrl;

    // A bus of the broker's own rather than the default bus: PutEvents is granted on it alone,
    // consumers' rules see only the broker's events, and each stage has its own.
    this.eventBus = new events.EventBus(this, 'LifecycleEvents', {
      eventBusName: `oauth-token-broker-${stage}`,
      description: 'oauth-token-broker lifecycle events (Connection Created, Refresh Failed, …)',
    });

    this.refresherDeadLetterQueue = new sqs.Queue(this, 'RefresherDeadLetterQueue', {
      queueName: `oauth-token-broker-${stage}-refresher-dlq`,
      encryption: sqs.QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      retentionPeriod: Duration.days(14),
      removalPolicy,
    });
    NagSuppressions.addResourceSuppressions(this.refresherDeadLetterQueue, [
      {
        id: 'AwsSolutions-SQS3',
        reason:
          'This queue is itself the dead-letter queue: of the refresher schedule target and of the refresher’s asynchronous invocations. A queue behind it would only hold the same messages again.',
      },
    ]);

    // The configuration is in each function's asset (broker.config.json); the environment holds
    // names and ARNs only, never configuration or secret values.
    const configJson = deployedConfigJson(config);
    this.configJson = configJson;
    const commonEnvironment = {
      BROKER_MODE: 'aws',
      BROKER_PUBLIC_BASE_URL: publicBaseUrl,
      BROKER_TABLE_NAME: this.table.tableName,
      BROKER_KMS_KEY_ID: this.key.keyArn,
      BROKER_SECRETS_PREFIX: config.secretsPrefix,
      POWERTOOLS_SERVICE_NAME: 'oauth-token-broker',
      POWERTOOLS_METRICS_NAMESPACE: metricsNamespaceFor(stage),
      POWERTOOLS_TRACE_ENABLED: String(tracing),
    };
    const consentIds = new Set(consentProviderIds(config));
    const scheduleMinutes = config.refresh.scheduleMinutes;
    // No retry or dead letter outlives the next scheduled run, which does the same work.
    const eventAge = Duration.minutes(Math.min(Math.max(scheduleMinutes, 1), 360));
    const publicRouteConcurrency = props.publicRouteConcurrency ?? 10;

    const functions = {} as Record<BrokerFunctionName, BrokerFunction>;
    for (const name of brokerFunctionNames) {
      const spec: BrokerFunctionSpec = brokerFunctions[name];
      const { access, trigger } = spec;
      const triggered =
        trigger.kind === 'schedule'
          ? {
              timeout: Duration.seconds(refresherTimeoutSeconds(config)),
              // Runs never pile up: one at a time, whatever the schedule and the retries do.
              reservedConcurrentExecutions: 1,
              // A failed run is tried once more, then parked in the dead-letter queue (alarmed).
              retryAttempts: 1,
              maxEventAge: eventAge,
              onFailure: new SqsDestination(this.refresherDeadLetterQueue),
            }
          : trigger.kind === 'route'
            ? { reservedConcurrentExecutions: publicRouteConcurrency }
            : {};
      const fn = new BrokerFunction(this, `${pascalCase(name)}Function`, {
        name,
        configJson,
        functionName: `oauth-token-broker-${stage}-${name}`,
        description: spec.description,
        logRemovalPolicy: removalPolicy,
        ...(spec.timeoutSeconds ? { timeout: Duration.seconds(spec.timeoutSeconds) } : {}),
        tracing: tracing ? lambda.Tracing.ACTIVE : lambda.Tracing.DISABLED,
        ...triggered,
        environment: {
          ...commonEnvironment,
          // Without it, events go to the log: only the functions that publish get the bus.
          ...(access.publishesEvents ? { BROKER_EVENT_BUS: this.eventBus.eventBusName } : {}),
        },
      });
      bindTableItems(fn, this.table, access.items);
      bindIndexQueries(fn, this.table, access.queries);
      bindTableKeyAtRest(fn, this.table);
      bindEnvelopeKey(fn, this.key, access.envelope);
      for (const statement of envelopeKeyPolicy(fn.role!, access.envelope)) {
        this.key.addToResourcePolicy(statement);
      }
      bindSecretValues(
        fn,
        [...secrets]
          .filter(
            ([providerId]) =>
              access.secrets === 'all' ||
              (access.secrets === 'user_consent' && consentIds.has(providerId)),
          )
          .map(([, secret]) => secret),
      );
      if (access.publishesEvents) bindPutEvents(fn, this.eventBus, eventSource);
      if (tracing) {
        NagSuppressions.addResourceSuppressions(
          fn.role!,
          [
            {
              id: 'AwsSolutions-IAM5',
              reason:
                'X-Ray tracing (Tracing.ACTIVE): xray:PutTraceSegments and xray:PutTelemetryRecords support no resource-level permissions, so Lambda adds them on Resource *. Every other statement of this role names its resources.',
              appliesTo: ['Resource::*'],
            },
          ],
          true,
        );
      }
      functions[name] = fn;
    }
    this.functions = functions;
    this.tokenFunction = functions.token;
    this.connectionsFunction = functions.connections;
    this.refresherFunction = functions.refresher;

    const routes = brokerFunctionNames.flatMap((name) => {
      const trigger: FunctionTrigger = brokerFunctions[name].trigger;
      if (trigger.kind !== 'route') return [];
      return this.api.addRoutes({
        path: trigger.path,
        methods: trigger.methods.map((method) => HttpMethod[method]),
        integration: new HttpLambdaIntegration(`${pascalCase(name)}Integration`, functions[name]),
      });
    });
    NagSuppressions.addResourceSuppressions(routes, [
      {
        id: 'AwsSolutions-APIG4',
        reason:
          'Browser routes of the consent flow, opened by the person who connects: start is authorised by a single-use connect session token, callback by the flow state bound to a cookie that start set. There is no caller identity an authorizer could check.',
      },
    ]);

    new events.Rule(this, 'RefresherSchedule', {
      description: `Runs the refresher every ${scheduleMinutes} minutes (refresh.scheduleMinutes)`,
      schedule: events.Schedule.rate(Duration.minutes(scheduleMinutes)),
      targets: [
        new targets.LambdaFunction(functions.refresher, {
          retryAttempts: 2,
          maxEventAge: eventAge,
          deadLetterQueue: this.refresherDeadLetterQueue,
        }),
      ],
    });

    this.callbackUrls = Object.fromEntries(
      [...consentIds].map((providerId) => [providerId, `${publicBaseUrl}/callback/${providerId}`]),
    );

    // For consumers in other stacks and accounts: the ARNs by a name that does not change.
    const prefix = props.parameterPrefix ?? `/oauth-token-broker/${stage}`;
    this.parameterNames = {
      tokenFunctionArn: `${prefix}/token-function-arn`,
      connectionsFunctionArn: `${prefix}/connections-function-arn`,
    };
    new ssm.StringParameter(this, 'TokenFunctionArnParameter', {
      parameterName: this.parameterNames.tokenFunctionArn,
      stringValue: functions.token.functionArn,
      description: 'oauth-token-broker: the token function (TokenBrokerClient functionName)',
    });
    new ssm.StringParameter(this, 'ConnectionsFunctionArnParameter', {
      parameterName: this.parameterNames.connectionsFunctionArn,
      stringValue: functions.connections.functionArn,
      description: 'oauth-token-broker: the connections function',
    });

    this.monitoring = new BrokerMonitoring(this, 'Monitoring', {
      stage,
      removalPolicy,
      functions,
      refresher: {
        fn: functions.refresher,
        logGroup: functions.refresher.logGroup,
        deadLetterQueue: this.refresherDeadLetterQueue,
      },
      scheduleMinutes,
      api: this.api,
    });
  }

  /** Lets `grantee` invoke the token function (tokens and signed requests), and nothing else. */
  grantFetchToken(grantee: iam.IGrantable): iam.Grant {
    return this.tokenFunction.grantInvoke(grantee);
  }

  /** Lets `grantee` invoke the connections function (connect sessions, get, list, delete). */
  grantManageConnections(grantee: iam.IGrantable): iam.Grant {
    return this.connectionsFunction.grantInvoke(grantee);
  }

  /**
   * One secret per provider, `<secretsPrefix>/<providerId>`, created with placeholder values in the
   * shape the provider's kind reads (its secretFields). The real values are set out of band
   * (docs/deployment.md) and are never in code, the template or the function's environment.
   */
  private providerSecret(
    prefix: string,
    providerId: string,
    entry: { kind: string },
    removalPolicy: RemovalPolicy,
  ): secretsmanager.Secret {
    const fields = protocolOf(entry).secretFields;
    const generated = fields.at(-1) ?? 'client_secret';
    const placeholders = Object.fromEntries(
      fields.filter((field) => field !== generated).map((field) => [field, SECRET_PLACEHOLDER]),
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
  ): { api: HttpApi; stage: HttpStage; domain: DomainName | undefined } {
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
    return { api, stage: apiStage, domain };
  }
}

/**
 * What the key's administrator may do: manage the key, its aliases, rotation, policy, grants'
 * revocation and deletion, never use it (no Encrypt, Decrypt, GenerateDataKey, ReEncrypt, and no
 * CreateGrant, which would hand that use to someone).
 */
export const keyAdminActions = [
  'kms:CancelKeyDeletion',
  'kms:CreateAlias',
  'kms:DeleteAlias',
  'kms:DescribeKey',
  'kms:DisableKey',
  'kms:DisableKeyRotation',
  'kms:EnableKey',
  'kms:EnableKeyRotation',
  'kms:GetKeyPolicy',
  'kms:GetKeyRotationStatus',
  'kms:ListAliases',
  'kms:ListGrants',
  'kms:ListKeyPolicies',
  'kms:ListKeyRotations',
  'kms:ListResourceTags',
  'kms:PutKeyPolicy',
  'kms:RetireGrant',
  'kms:RevokeGrant',
  'kms:RotateKeyOnDemand',
  'kms:ScheduleKeyDeletion',
  'kms:TagResource',
  'kms:UntagResource',
  'kms:UpdateAlias',
  'kms:UpdateKeyDescription',
] as const;

function readConfig(config: TokenBrokerProps['config']): BrokerConfig {
  if (typeof config !== 'string') return parseConfig(config, { source: 'TokenBroker config' });
  let text: string;
  try {
    text = readFileSync(config, 'utf8');
  } catch (cause) {
    throw new Error(`TokenBroker config: cannot read ${config}: ${(cause as Error).message}`);
  }
  return parseConfig(JSON.parse(text) as unknown, { source: config });
}

/**
 * The validated configuration as the functions read it from their asset (loadDeployedConfig):
 * parseConfig's result, with the defaults and the catalog entries filled in, so the functions
 * need neither the validator nor the catalog in their bundles. It holds no secrets (those are
 * named by provider id and read from Secrets Manager); the public URL, known only at deploy time,
 * arrives separately as BROKER_PUBLIC_BASE_URL.
 */
function deployedConfigJson(config: BrokerConfig): string {
  const { $schema: _schema, publicBaseUrl: _publicBaseUrl, ...deployed } = config;
  return JSON.stringify(deployed);
}

export function pascalCase(id: string): string {
  return id
    .split(/[^A-Za-z0-9]+/)
    .filter(Boolean)
    .map((part) => part[0]!.toUpperCase() + part.slice(1))
    .join('');
}
