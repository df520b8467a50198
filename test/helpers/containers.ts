import { join } from 'node:path';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { BrokerDeps } from '../../shared/broker-core.ts';
import { createBroker, type Broker } from '../../shared/broker.ts';
import { LocalKeyManager } from '../../shared/crypto/local-key-manager.ts';
import type { BrokerLogger } from '../../shared/logger.ts';
import { SecretsFileBackend } from '../../shared/secrets.ts';
import type { TestBroker } from './local.ts';

/** A logger that drops everything: race tests run thousands of renewals. */
export const silentLogger: BrokerLogger = {
  debug: () => {},
  info: () => {},
  warn: () => {},
  error: () => {},
};

export interface Container {
  broker: Broker;
  dynamo: DynamoDBClient;
  /** DynamoDB commands this container sent, by name (e.g. "QueryCommand"), with their input. */
  commands: { name: string; input: Record<string, unknown>; itemsRead?: number }[];
  close(): void;
}

/**
 * Another "Lambda container" beside the offline runtime's: its own broker from shared/broker.ts,
 * DynamoDB client, envelope (data-key caches) and singleflight map, over the same table, sandbox
 * providers, secrets, master key and clock. Several of these race each other as separate
 * containers would; nothing in one can hide a race from another.
 */
export async function startContainer(
  local: TestBroker,
  overrides: Partial<BrokerDeps> = {},
): Promise<Container> {
  const endpoint = await local.dynamo.config.endpoint!();
  const dynamo = new DynamoDBClient({
    endpoint: `${endpoint.protocol}//${endpoint.hostname}:${endpoint.port}${endpoint.path}`,
    region: 'local',
    credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
  });
  const commands: Container['commands'] = [];
  dynamo.middlewareStack.add(
    (next, context) => async (args) => {
      const command: Container['commands'][number] = {
        name: context.commandName ?? 'unknown',
        input: args.input as Record<string, unknown>,
      };
      commands.push(command);
      const result = await next(args);
      const output = result.output as { Items?: unknown[]; Item?: unknown };
      command.itemsRead = output.Items?.length ?? (output.Item ? 1 : 0);
      return result;
    },
    { step: 'initialize', name: 'recordCommands' },
  );
  const broker = createBroker({
    config: local.broker.config,
    kinds: local.broker.kinds,
    dynamo,
    tableName: local.tableName,
    keys: LocalKeyManager.fromEnvironmentOrFile(
      process.env,
      join(local.dataDir, 'local-master.key'),
    ),
    secrets: new SecretsFileBackend(join(local.dataDir, 'secrets.json')),
    events: local.broker.events,
    now: local.clock.now,
    logger: silentLogger,
    sandboxBaseUrl: `${local.url}/sandbox`,
    // Generous: on two shared cores a busy suite (esbuild bundling the stack) can hold a sandbox
    // answer past 400 ms, and a timed-out refresh call is retried with a spent refresh token.
    http: { timeoutMs: 2000, retries: 2, minRetryDelayMs: 5 },
    ...overrides,
  });
  return { broker, dynamo, commands, close: () => dynamo.destroy() };
}
