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
import type { BrokerCore } from '../shared/broker-core.ts';
import { createBroker, type Broker } from '../shared/broker.ts';
import type { BrokerConfig } from '../shared/config.ts';
import type { DataKey, EncryptionContext, KeyManager } from '../shared/crypto/key-manager.ts';
import { LocalKeyManager } from '../shared/crypto/local-key-manager.ts';
import { getProvider } from '../shared/providers/resolve.ts';
import type { ProviderContext, TokenSet } from '../shared/providers/types.ts';
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
  /** With `sandboxProcess`: the sandboxes the containers call. */
  sandbox?: SandboxProcess;
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
 * embedded in this one. `sandboxProcess` (the raw configuration): the sandbox providers the
 * containers call in a process of their own too (bench/sandbox-process.ts).
 */
export async function startBenchRuntime(options: {
  config: BrokerConfig;
  now?: () => number;
  storeProcess?: boolean;
  sandboxProcess?: { configInput: unknown };
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
  const storeEndpoint = `${endpoint.protocol}//${endpoint.hostname}:${endpoint.port}`;
  const sandbox = options.sandboxProcess
    ? await startSandboxProcess(dataDir, options.sandboxProcess.configInput, storeEndpoint)
    : undefined;
  const containers: BenchContainer[] = [];
  return {
    local,
    dataDir,
    ...(store ? { storeCpuMs: () => ask<number>(store.child, 'cpuMs', { type: 'cpu' }) } : {}),
    ...(sandbox ? { sandbox } : {}),
    async container(containerOptions = {}) {
      const dynamo = new DynamoDBClient({
        endpoint: storeEndpoint,
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
        sandboxBaseUrl: `${sandbox?.url ?? local.url}/sandbox`,
        ...(now ? { now } : {}),
      });
      const container = { broker, dynamo, keys, reads };
      containers.push(container);
      return container;
    },
    async close() {
      for (const container of containers) container.dynamo.destroy();
      await local.close();
      sandbox?.child.disconnect();
      store?.child.kill();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

const storeScript = fileURLToPath(new URL('./store-process.ts', import.meta.url));
const sandboxScript = fileURLToPath(new URL('./sandbox-process.ts', import.meta.url));

/** A forked helper process and a question to it: sends `message`, resolves its reply's `key`. */
function ask<T>(child: ChildProcess, key: string, message?: object): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onMessage = (reply: Record<string, T>) => {
      if (!(key in reply)) return;
      child.off('message', onMessage);
      child.off('exit', onExit);
      resolve(reply[key]!);
    };
    const onExit = () => reject(new Error(`a bench helper process exited before its ${key}`));
    child.on('message', onMessage);
    child.once('exit', onExit);
    if (message) child.send(message);
  });
}

async function startStoreProcess(): Promise<{ child: ChildProcess; endpoint: string }> {
  const child = fork(storeScript, { execArgv: ['--import', 'tsx'], stdio: 'inherit' });
  const port = await ask<number>(child, 'port');
  return { child, endpoint: `http://127.0.0.1:${port}` };
}

/** The sandbox providers of a process of their own (bench/sandbox-process.ts). */
export interface SandboxProcess {
  url: string;
  /** Every Quiqup call answers this much later. */
  delay(ms: number): Promise<void>;
  /** Quiqup token calls so far. */
  tokenCalls(): Promise<number>;
  cpuMs(): Promise<number>;
}

async function startSandboxProcess(
  dataDir: string,
  configInput: unknown,
  storeEndpoint: string,
): Promise<SandboxProcess & { child: ChildProcess }> {
  const child = fork(sandboxScript, {
    execArgv: ['--import', 'tsx'],
    env: {
      ...process.env,
      SANDBOX_DATA_DIR: dataDir,
      SANDBOX_CONFIG: JSON.stringify(configInput),
      SANDBOX_STORE_ENDPOINT: storeEndpoint,
    },
    stdio: 'inherit',
  });
  const url = await ask<string>(child, 'url');
  return {
    child,
    url,
    delay: async (ms) => void (await ask<boolean>(child, 'done', { type: 'delay', ms })),
    tokenCalls: () => ask<number>(child, 'count', { type: 'count' }),
    cpuMs: () => ask<number>(child, 'cpuMs', { type: 'cpu' }),
  };
}

/** When a stampede's provider calls ran and its fenced saves ended, in ms from its start. */
export interface RenewalTimes {
  callWindows: { from: number; to: number }[];
  storedAt: number[];
}

/**
 * Records, on one container's broker, each mint of `providerId` (a client-credentials provider)
 * and the end of each fenced save (nobody can be served the new token before it), as ms from
 * `elapsed()`, into `into`. Returns the mint as it was, for timing calls alone.
 */
export function recordRenewalTimes(
  broker: BrokerCore,
  providerId: string,
  elapsed: () => number,
  into: RenewalTimes,
): (context: ProviderContext<never>) => Promise<TokenSet> {
  const provider = getProvider(broker.providers, providerId);
  const kind = provider.kind;
  if (kind.variant !== 'client-credentials') throw new Error('the bench needs a minting provider');
  const mint = kind.mint;
  provider.kind = {
    ...kind,
    mint: async (context) => {
      const from = elapsed();
      try {
        return await mint(context);
      } finally {
        into.callWindows.push({ from, to: elapsed() });
      }
    },
  };
  const store = broker.store;
  const saveTokens = store.saveTokens.bind(store);
  store.saveTokens = async (...args) => {
    const saved = await saveTokens(...args);
    into.storedAt.push(elapsed());
    return saved;
  };
  return mint;
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
