import { resolve } from 'node:path';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { KMSClient } from '@aws-sdk/client-kms';
import { EventBridgeClient } from '@aws-sdk/client-eventbridge';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import type { BrokerConfig } from './config.ts';
import { loadDeployedConfig } from './deployed-config.ts';
import { Envelope } from './crypto/envelope.ts';
import type { KeyManager } from './crypto/key-manager.ts';
import { KmsKeyManager } from './crypto/kms-key-manager.ts';
import { LocalKeyManager } from './crypto/local-key-manager.ts';
import { ConfigError } from './errors.ts';
import { EventBridgePublisher, LogEventPublisher, type EventPublisher } from './events.ts';
import { CountingEventPublisher, traced } from './observability.ts';
import { logger as defaultLogger, type BrokerLogger } from './logger.ts';
import type { ProviderHttpOptions } from './providers/http.ts';
import { defaultProtocols, type ProtocolRegistry } from './providers/protocols.ts';
import { resolveProviders, type ResolvedProvider } from './providers/resolve.ts';
import { defaultLeaseMs, defaultWaitMs, ProviderCallTimes } from './refresh.ts';
import { Refresher } from './refresher.ts';
import {
  SecretSource,
  SecretsFileBackend,
  SecretsManagerBackend,
  type SecretBackend,
} from './secrets.ts';
import { ConnectService } from './connect/connect-service.ts';
import { ConnectionsApi } from './connect/connections-api.ts';
import { FlowStore } from './connect/flow-store.ts';
import { ConnectionDirectory } from './store/connection-directory.ts';
import type { ConnectionStore } from './store/connection-store.ts';
import { DynamoConnectionStore } from './store/dynamo-connection-store.ts';
import { DynamoSealedCache } from './store/sealed-cache.ts';
import { TokenService } from './token-service.ts';

/** The ports the core needs; AWS or local adapters behind each. */
export interface BrokerDeps {
  config: BrokerConfig;
  /** The provider kinds the config's entries name (default: the shipped ones). */
  kinds?: ProtocolRegistry;
  dynamo: DynamoDBClient;
  tableName: string;
  keys: KeyManager;
  secrets: SecretBackend;
  /** Lifecycle events; default: to the log (and kept for the offline landing page). */
  events?: EventPublisher;
  now?: () => number;
  logger?: BrokerLogger;
  sandboxBaseUrl?: string;
  http?: Partial<ProviderHttpOptions>;
  leaseMs?: number;
  waitMs?: number;
}

/** One container's broker: every client and cache built once. */
export interface Broker {
  config: BrokerConfig;
  /** The provider kinds its config's entries name. */
  kinds: ProtocolRegistry;
  providers: Map<string, ResolvedProvider>;
  store: ConnectionStore;
  events: EventPublisher;
  tokens: TokenService;
  refresher: Refresher;
  connect: ConnectService;
  connections: ConnectionsApi;
}

export function createBroker(deps: BrokerDeps): Broker {
  const now = deps.now ?? Date.now;
  const logger = deps.logger ?? defaultLogger;
  const db = DynamoDBDocumentClient.from(deps.dynamo, {
    marshallOptions: { removeUndefinedValues: true },
  });
  const envelope = new Envelope(deps.keys);
  const store = new DynamoConnectionStore(db, deps.tableName, envelope);
  const providers = resolveProviders({
    config: deps.config,
    kinds: deps.kinds ?? defaultProtocols,
    sealedCache: (providerId) =>
      new DynamoSealedCache(db, deps.tableName, envelope, providerId, now),
    secrets: new SecretSource(deps.secrets),
    now,
    sandboxBaseUrl: deps.sandboxBaseUrl ?? defaultSandboxBaseUrl(),
    ...(deps.http ? { http: deps.http } : {}),
  });
  const events = deps.events ?? new LogEventPublisher(logger);
  const refreshDeps = {
    store,
    events,
    providers,
    now,
    logger,
    leaseMs: deps.leaseMs ?? defaultLeaseMs,
    callTimes: new ProviderCallTimes(),
    waitMs: deps.waitMs ?? defaultWaitMs,
  };
  const directory = new ConnectionDirectory(db, deps.tableName);
  const connect = new ConnectService({
    config: deps.config,
    providers,
    flows: new FlowStore(db, deps.tableName, envelope),
    store,
    directory,
    events,
    logger,
    now,
  });
  return {
    config: deps.config,
    kinds: deps.kinds ?? defaultProtocols,
    providers,
    store,
    events,
    tokens: new TokenService(refreshDeps),
    refresher: new Refresher({ ...refreshDeps, config: deps.config }),
    connect,
    connections: new ConnectionsApi({
      providers,
      directory,
      connect,
      events,
      logger,
      now,
    }),
  };
}

function defaultSandboxBaseUrl(env: NodeJS.ProcessEnv = process.env): string {
  return env.BROKER_SANDBOX_URL ?? `http://localhost:${env.PORT ?? 3000}/sandbox`;
}

/**
 * Builds the broker's ports from the environment, as a deployed function does:
 * - the configuration as the TokenBroker construct deployed it (`loadDeployedConfig`: the file in
 *   `LAMBDA_TASK_ROOT`, or `BROKER_CONFIG_JSON`).
 * - `BROKER_TABLE_NAME` (required): the token table. The DynamoDB client honours the standard
 *   endpoint settings (`AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_DYNAMODB`), which is how the offline
 *   runtime and tests point it at the embedded store or moto.
 * - `BROKER_KMS_KEY_ID` → KMS envelope key; otherwise the local key (`BROKER_LOCAL_KEY` base64, or
 *   the file `BROKER_LOCAL_KEY_FILE`, default .broker/local-master.key, created on first run).
 * - `BROKER_SECRETS_FILE` → local secrets file; otherwise Secrets Manager `<secretsPrefix>/<id>`.
 *   Offline (`BROKER_MODE=local`, the default outside Lambda) the file defaults to
 *   .broker/secrets.json.
 * - `BROKER_PUBLIC_BASE_URL`: the public URL of the HTTP routes (overrides publicBaseUrl).
 * - `BROKER_EVENT_BUS` → lifecycle events to that EventBridge bus; otherwise to the log.
 */
export function depsFromEnvironment(env: NodeJS.ProcessEnv = process.env): BrokerDeps {
  const tableName = env.BROKER_TABLE_NAME;
  if (!tableName) throw new ConfigError('BROKER_TABLE_NAME is not set.');
  const config = loadDeployedConfig(env);
  const local = (env.BROKER_MODE ?? (env.AWS_LAMBDA_FUNCTION_NAME ? 'aws' : 'local')) === 'local';

  const keys = env.BROKER_KMS_KEY_ID
    ? new KmsKeyManager(traced(new KMSClient({})), env.BROKER_KMS_KEY_ID)
    : local
      ? LocalKeyManager.fromEnvironmentOrFile(
          env,
          resolve(env.BROKER_LOCAL_KEY_FILE ?? '.broker/local-master.key'),
        )
      : undefined;
  if (!keys) throw new ConfigError('BROKER_KMS_KEY_ID is not set.');

  const secretsFile = env.BROKER_SECRETS_FILE ?? (local ? '.broker/secrets.json' : undefined);
  const secrets = secretsFile
    ? new SecretsFileBackend(resolve(secretsFile))
    : new SecretsManagerBackend(
        traced(new SecretsManagerClient({})),
        env.BROKER_SECRETS_PREFIX ?? config.secretsPrefix,
      );

  // Failed renewals and needs_reauth transitions are counted (metrics) from the events themselves.
  const events = new CountingEventPublisher(
    env.BROKER_EVENT_BUS
      ? new EventBridgePublisher(traced(new EventBridgeClient({})), env.BROKER_EVENT_BUS)
      : new LogEventPublisher(defaultLogger),
  );

  return {
    // The stack knows the API's URL only at deploy time, so it arrives as an environment value.
    config: env.BROKER_PUBLIC_BASE_URL
      ? { ...config, publicBaseUrl: env.BROKER_PUBLIC_BASE_URL }
      : config,
    dynamo: traced(new DynamoDBClient({})),
    tableName,
    keys,
    secrets,
    events,
  };
}

let containerBroker: Broker | undefined;

/** The broker of this container, built on first use from the environment. */
export function getBroker(): Broker {
  containerBroker ??= createBroker(depsFromEnvironment());
  return containerBroker;
}

/** For the offline runtime and tests: install (or clear) the container's broker. */
export function setBroker(broker: Broker | undefined): void {
  containerBroker = broker;
}
