/**
 * What the workloads share: a temporary offline runtime, extra "containers" (independent
 * createBroker instances with their own DynamoDB client over the same store), a key manager that
 * counts its calls, a DynamoDB middleware that counts the items read, and the statistics.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { startLocalBroker, type LocalBroker } from '../infra/local/local-broker.ts';
import { createBroker, type Broker } from '../shared/broker.ts';
import type { BrokerConfig } from '../shared/config.ts';
import type { DataKey, EncryptionContext, KeyManager } from '../shared/crypto/key-manager.ts';
import { LocalKeyManager } from '../shared/crypto/local-key-manager.ts';
import { SecretsFileBackend } from '../shared/secrets.ts';

/** One row of the printed table and of results.json. */
export interface BenchRow {
  workload: string;
  metric: string;
  measured: string;
  goal: string;
  /** undefined: a figure with no goal of its own (context for the others). */
  met?: boolean;
}

export interface WorkloadResult {
  rows: BenchRow[];
  /** Raw figures, for results.json. */
  details: Record<string, unknown>;
  /** What the run noticed that the table cannot say. */
  notes: string[];
}

/** Counts the key manager's calls, and the distinct data keys it was asked to unwrap. */
export class CountingKeyManager implements KeyManager {
  generated = 0;
  decrypted = 0;
  readonly unwrappedKeys = new Set<string>();

  constructor(private readonly inner: KeyManager) {}

  generateDataKey(context: EncryptionContext): Promise<DataKey> {
    this.generated += 1;
    return this.inner.generateDataKey(context);
  }

  decryptDataKey(wrapped: Buffer, context: EncryptionContext): Promise<Buffer> {
    this.decrypted += 1;
    this.unwrappedKeys.add(wrapped.toString('base64'));
    return this.inner.decryptDataKey(wrapped, context);
  }

  /** Unwraps beyond the first of each data key: what the decrypt cache failed to save. */
  get repeatDecrypts(): number {
    return this.decrypted - this.unwrappedKeys.size;
  }
}

/** Items the store returned, by command: GetItem's Item, Query's and Scan's ScannedCount. */
export class ReadCounter {
  readonly items: Record<string, number> = {};
  readonly requests: Record<string, number> = {};

  get total(): number {
    return Object.values(this.items).reduce((a, b) => a + b, 0);
  }

  reset(): void {
    for (const key of Object.keys(this.items)) delete this.items[key];
    for (const key of Object.keys(this.requests)) delete this.requests[key];
  }

  /** Adds the counting middleware to a client (a DocumentClient built on it shares the stack). */
  attach(client: DynamoDBClient): void {
    client.middlewareStack.add(
      (next, context) => async (args) => {
        const result = await next(args);
        const command = context.commandName ?? 'unknown';
        const output = result.output as {
          Item?: unknown;
          Count?: number;
          ScannedCount?: number;
          Responses?: Record<string, unknown[]>;
        };
        let items = 0;
        if (output.ScannedCount !== undefined) items = output.ScannedCount;
        else if (output.Count !== undefined) items = output.Count;
        else if (output.Responses) {
          items = Object.values(output.Responses).reduce((sum, list) => sum + list.length, 0);
        } else if (output.Item) items = 1;
        this.requests[command] = (this.requests[command] ?? 0) + 1;
        this.items[command] = (this.items[command] ?? 0) + items;
        return result;
      },
      { step: 'initialize', name: 'benchReadCounter' },
    );
  }
}

export interface BenchRuntime {
  local: LocalBroker;
  dataDir: string;
  /** With `storeProcess`: the CPU time the store's process has used so far (ms). */
  storeCpuMs?: () => Promise<number>;
  /** Another container over the same store, sandbox and master key. */
  container(options?: { config?: BrokerConfig; now?: () => number }): Promise<BenchContainer>;
  close(): Promise<void>;
}

export interface BenchContainer {
  broker: Broker;
  dynamo: DynamoDBClient;
  keys: CountingKeyManager;
  reads: ReadCounter;
}

/**
 * The offline runtime in a temporary folder with an in-memory store and no scheduled refresher,
 * plus a factory for containers built the way startLocalBroker builds its own broker.
 * `storeProcess`: the store (dynalite) in a process of its own (bench/store-process.ts) instead of
 * embedded in this one.
 */
export async function startBenchRuntime(options: {
  config: BrokerConfig;
  now?: () => number;
  storeProcess?: boolean;
}): Promise<BenchRuntime> {
  const dataDir = mkdtempSync(join(tmpdir(), 'broker-bench-'));
  const store = options.storeProcess ? await startStoreProcess() : undefined;
  const local = await startLocalBroker({
    port: 0,
    dataDir,
    persist: false,
    config: options.config,
    refresherIntervalSeconds: 0,
    ...(options.now ? { now: options.now } : {}),
    ...(store ? { storeEndpoint: store.endpoint } : {}),
  });
  const endpoint = await local.dynamo.config.endpoint!();
  const containers: BenchContainer[] = [];
  return {
    local,
    dataDir,
    ...(store ? { storeCpuMs: () => store.cpuMs() } : {}),
    async container(containerOptions = {}) {
      const dynamo = new DynamoDBClient({
        endpoint: `${endpoint.protocol}//${endpoint.hostname}:${endpoint.port}`,
        region: 'local',
        credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
      });
      const reads = new ReadCounter();
      reads.attach(dynamo);
      const keys = new CountingKeyManager(
        LocalKeyManager.fromEnvironmentOrFile(process.env, join(dataDir, 'local-master.key')),
      );
      const now = containerOptions.now ?? options.now;
      const broker = createBroker({
        config: containerOptions.config ?? local.broker.config,
        dynamo,
        tableName: local.tableName,
        keys,
        secrets: new SecretsFileBackend(join(dataDir, 'secrets.json')),
        sandboxBaseUrl: `${local.url}/sandbox`,
        ...(now ? { now } : {}),
      });
      const container = { broker, dynamo, keys, reads };
      containers.push(container);
      return container;
    },
    async close() {
      for (const container of containers) container.dynamo.destroy();
      await local.close();
      store?.child.kill();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

const storeScript = fileURLToPath(new URL('./store-process.ts', import.meta.url));

async function startStoreProcess(): Promise<{
  child: ChildProcess;
  endpoint: string;
  cpuMs(): Promise<number>;
}> {
  const child = fork(storeScript, { execArgv: ['--import', 'tsx'], stdio: 'inherit' });
  const reply = <T>(key: string) =>
    new Promise<T>((resolve, reject) => {
      const onMessage = (message: Record<string, T>) => {
        if (!(key in message)) return;
        child.off('message', onMessage);
        resolve(message[key]!);
      };
      child.on('message', onMessage);
      child.once('exit', () => reject(new Error('the store process exited')));
    });
  const port = await reply<number>('port');
  return {
    child,
    endpoint: `http://127.0.0.1:${port}`,
    cpuMs() {
      const answer = reply<number>('cpuMs');
      child.send({ type: 'cpu' });
      return answer;
    },
  };
}

/** Nearest-rank percentile (p in 0..100) of unsorted samples. */
export function percentile(samples: readonly number[], p: number): number {
  if (samples.length === 0) return NaN;
  const sorted = [...samples].sort((a, b) => a - b);
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))]!;
}

export const median = (samples: readonly number[]) => percentile(samples, 50);

export const ms = (value: number) =>
  `${value < 10 ? value.toFixed(2) : value < 100 ? value.toFixed(1) : value.toFixed(0)} ms`;
export const times = (value: number) => `${value.toFixed(2)}×`;
export const kb = (bytes: number) => `${(bytes / 1024).toFixed(1)} KB`;
