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
  HttpMethod,
  LogGroupLogDestination,
  type HttpStage,
} from 'aws-cdk-lib/aws-apigatewayv2';
import { HttpLambdaIntegration } from 'aws-cdk-lib/aws-apigatewayv2-integrations';
import { Certificate } from 'aws-cdk-lib/aws-certificatemanager';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as events from 'aws-cdk-lib/aws-events';
import * as targets from 'aws-cdk-lib/aws-events-targets';
import * as kms from 'aws-cdk-lib/aws-kms';
import { SqsDestination } from 'aws-cdk-lib/aws-lambda-destinations';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { NagSuppressions } from 'cdk-nag';
import type { Construct } from 'constructs';
import type { BrokerConfig } from '../shared/config.ts';
import { eventSource } from '../shared/events.ts';
import { withoutCatalogFields } from '../shared/providers/catalog.ts';
import { protocolOf } from '../shared/providers/registry.ts';
import { hasConsentFlow } from '../shared/providers/types.ts';
import { refresherTimeoutSeconds } from '../shared/refresher.ts';
import { SECRET_PLACEHOLDER } from '../shared/secrets.ts';
import { dueIndex, providerIndex, tableKey, ttlAttribute } from '../shared/store/table.ts';
import { BrokerFunction, type BrokerFunctionProps } from './broker-function.ts';
import {
  brokerFunctionNames,
  brokerFunctions,
  functionRoutes,
  type BrokerFunctionName,
  type BrokerFunctionSpec,
} from './functions.ts';
import {
  bindEnvelopeKey,
  bindIndexQueries,
  bindPutEvents,
  bindSecretValues,
  bindTableItems,
  bindTableKeyAtRest,
} from './grants.ts';
import { BrokerMonitoring } from './monitoring.ts';

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

/** Provider ids whose kind has a consent flow (a callback URL to register at the provider). */
export function consentProviderIds(config: BrokerConfig): string[] {
  return Object.entries(config.providers)
    .filter(([, provider]) => hasConsentFlow(protocolOf(provider)))
    .map(([providerId]) => providerId);
}

/**
 * The broker in one stack: the token table and its key, one secret per provider, the five
 * functions (token, connections, connect-start, connect-callback, refresher), the HTTP API with the
 * consent-flow routes, the refresher's schedule with its dead-letter queue, the lifecycle event
 * bus, and alarms to an SNS topic. Environment-agnostic (no account or region lookups), so `cdk
 * synth` works offline without credentials.
 */
export class BrokerStack extends Stack {
  readonly key: kms.Key;
  readonly table: dynamodb.Table;
  readonly providerSecrets: ReadonlyMap<string, secretsmanager.Secret>;
  readonly functions: Readonly<Record<BrokerFunctionName, BrokerFunction>>;
  readonly tokenFunction: BrokerFunction;
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
      secrets.set(
        providerId,
        this.providerSecret(config.secretsPrefix, providerId, provider, removalPolicy),
      );
    }
    this.providerSecrets = secrets;

    const { api, stage: apiStage, domain } = this.httpApi(stage, removalPolicy, props.customDomain);
    this.api = api;
    this.apiStage = apiStage;
    this.apiUrl = props.customDomain ? `https://${props.customDomain.domainName}` : api.apiEndpoint;
    const publicBaseUrl = config.publicBaseUrl?.replace(/\/+$/, '') ?? this.apiUrl;

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

    // What every function reads its configuration from; secret names only, never values.
    const commonEnvironment = {
      BROKER_MODE: 'aws',
      BROKER_CONFIG_JSON: this.configEnvironmentValue(config),
      BROKER_PUBLIC_BASE_URL: publicBaseUrl,
      BROKER_TABLE_NAME: this.table.tableName,
      BROKER_KMS_KEY_ID: this.key.keyArn,
      BROKER_SECRETS_PREFIX: config.secretsPrefix,
      POWERTOOLS_SERVICE_NAME: 'oauth-token-broker',
    };
    const consentIds = new Set(consentProviderIds(config));
    const scheduleMinutes = config.refresh.scheduleMinutes;
    // No retry or dead letter outlives the next scheduled run, which does the same work.
    const eventAge = Duration.minutes(Math.min(Math.max(scheduleMinutes, 1), 360));

    const functions = {} as Record<BrokerFunctionName, BrokerFunction>;
    for (const name of brokerFunctionNames) {
      const spec: BrokerFunctionSpec = brokerFunctions[name];
      const access = spec.access;
      const extra: Partial<BrokerFunctionProps> =
        name === 'refresher'
          ? {
              timeout: Duration.seconds(refresherTimeoutSeconds(config)),
              // A failed run is tried once more, then parked in the dead-letter queue (alarmed).
              retryAttempts: 1,
              maxEventAge: eventAge,
              onFailure: new SqsDestination(this.refresherDeadLetterQueue),
            }
          : {};
      const fn = new BrokerFunction(this, `${pascalCase(name)}Function`, {
        functionName: `oauth-token-broker-${stage}-${name}`,
        description: spec.description,
        entry: fileURLToPath(new URL(`../${spec.entry}`, import.meta.url)),
        logRemovalPolicy: removalPolicy,
        ...(spec.timeoutSeconds ? { timeout: Duration.seconds(spec.timeoutSeconds) } : {}),
        ...extra,
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
      functions[name] = fn;
    }
    this.functions = functions;
    this.tokenFunction = functions.token;

    const routes = functionRoutes().flatMap((route) =>
      this.api.addRoutes({
        path: route.path,
        methods: [HttpMethod[route.method]],
        integration: new HttpLambdaIntegration(
          `${pascalCase(route.functionName)}Integration`,
          functions[route.functionName],
        ),
      }),
    );
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
    });

    new CfnOutput(this, 'ApiUrl', { value: this.apiUrl, description: 'Base URL of the HTTP API' });
    new CfnOutput(this, 'TokenFunctionName', {
      value: functions.token.functionName,
      description: 'Invoke this with TokenBrokerClient (functionName)',
    });
    new CfnOutput(this, 'TokenFunctionArn', { value: functions.token.functionArn });
    new CfnOutput(this, 'ConnectionsFunctionName', {
      value: functions.connections.functionName,
      description: 'Invoke this from your backend: createConnectSession, get, list, delete',
    });
    new CfnOutput(this, 'ConnectionsFunctionArn', { value: functions.connections.functionArn });
    new CfnOutput(this, 'RefresherFunctionName', { value: functions.refresher.functionName });
    new CfnOutput(this, 'TableName', { value: this.table.tableName });
    new CfnOutput(this, 'EventBusName', {
      value: this.eventBus.eventBusName,
      description: 'Lifecycle events (source oauth-token-broker); put your rules on this bus',
    });
    new CfnOutput(this, 'AlarmTopicArn', {
      value: this.monitoring.topic.topicArn,
      description: 'Subscribe to this topic for the broker’s alarms',
    });
    for (const providerId of consentIds) {
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
   * The validated configuration as the functions read it (BROKER_CONFIG_JSON): a plain string in
   * the template, so a change shows as such in `cdk diff`. It holds no secrets (those are named by
   * provider id and read from Secrets Manager); the public URL, known only at deploy time, arrives
   * separately as BROKER_PUBLIC_BASE_URL.
   */
  private configEnvironmentValue(config: BrokerConfig): string {
    const { $schema: _schema, publicBaseUrl: _publicBaseUrl, ...rest } = config;
    // Catalog-based entries ship as written (the catalog id and overrides): the functions merge
    // the catalog, which is part of their code, again when they read the configuration.
    const providers = Object.fromEntries(
      Object.entries(rest.providers).map(([id, entry]) => [id, withoutCatalogFields(entry)]),
    );
    const value = JSON.stringify({ ...rest, providers });
    const size = Buffer.byteLength(value);
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
