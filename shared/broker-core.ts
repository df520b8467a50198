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

/** The token table as the core reaches it; the connect services are built over the same. */
export interface TokenTable {
  db: DynamoDBDocumentClient;
  name: string;
  /** Envelope encryption with its data-key caches, shared by everything stored in the table. */
  envelope: Envelope;
}

/**
 * One container's broker core: every client and cache built once, and what the `token` and
 * `refresher` functions use. It imports nothing of the connect flows (shared/connect/, the
 * connection directory), so their bundles carry none of it; the full broker (shared/broker.ts)
 * is this core with the connect services built on top.
 */
export interface BrokerCore {
  config: BrokerConfig;
  /** The provider kinds its config's entries name. */
  kinds: ProtocolRegistry;
  providers: Map<string, ResolvedProvider>;
  store: ConnectionStore;
  events: EventPublisher;
  tokens: TokenService;
  refresher: Refresher;
  /** The table, clock and logger it was built with, for the services composed on top. */
  table: TokenTable;
  now: () => number;
  logger: BrokerLogger;
}

export function createBrokerCore(deps: BrokerDeps): BrokerCore {
  const now = deps.now ?? Date.now;
  const logger = deps.logger ?? defaultLogger;
  const kinds = deps.kinds ?? defaultProtocols;
  const db = DynamoDBDocumentClient.from(deps.dynamo, {
    marshallOptions: { removeUndefinedValues: true },
  });
  const envelope = new Envelope(deps.keys);
  const store = new DynamoConnectionStore(db, deps.tableName, envelope);
  const providers = resolveProviders({
    config: deps.config,
    kinds,
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
  return {
    config: deps.config,
    kinds,
    providers,
    store,
    events,
    tokens: new TokenService(refreshDeps),
    refresher: new Refresher({ ...refreshDeps, config: deps.config }),
    table: { db, name: deps.tableName, envelope },
    now,
    logger,
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

/**
 * One broker per container, whichever function asks first: `getBrokerCore` (token, refresher)
 * builds a core, `getBroker` (shared/broker.ts: the connect functions) a full broker, on the core
 * already here if there is one.
 */
let containerBroker: BrokerCore | undefined;

/** This container's broker (its core at least), built on first use from the environment. */
export function getBrokerCore(): BrokerCore {
  containerBroker ??= createBrokerCore(depsFromEnvironment());
  return containerBroker;
}

/**
 * For the offline runtime and tests: install (or clear) the container's broker. A full broker
 * (createBroker) serves every function; what getBrokerCore and getBroker return is this one.
 */
export function setBroker(broker: BrokerCore | undefined): void {
  containerBroker = broker;
}
