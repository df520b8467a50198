import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LambdaClient, InvokeCommand } from '@aws-sdk/client-lambda';
import { ScanCommand } from '@aws-sdk/client-dynamodb';
import { parseConfig, type BrokerConfig } from '../../shared/config.ts';
import { logger } from '../../shared/logger.ts';
import type { KindRegistry } from '../../shared/providers/registry.ts';
import { startLocalBroker, type LocalBroker } from '../../infra/local/local-broker.ts';

/** A clock the broker and the sandboxes share, so a test can move time instead of waiting. */
export class TestClock {
  constructor(public t = Date.UTC(2026, 10, 23, 12, 0, 0)) {}
  now = (): number => this.t;
  advance(seconds: number): void {
    this.t += seconds * 1000;
  }
}

export const testConfig = () =>
  parseConfig({
    allowedReturnTo: ['http://localhost/'],
    providers: {
      quiqup: { catalog: 'quiqup', environment: 'sandbox' },
      quidkey: { catalog: 'quidkey', environment: 'sandbox', refreshLeadSeconds: 60 },
    },
  });

export interface TestBroker extends LocalBroker {
  clock: TestClock;
  lambda: LambdaClient;
  invoke(payload: unknown): Promise<Record<string, unknown>>;
  /** Invokes any function by name through the Invoke API. */
  invokeFunction(name: string, payload: unknown): Promise<Record<string, unknown>>;
  /** How many items the table holds (a Scan: only ever used by tests). */
  itemCount(): Promise<number>;
  dataDir: string;
}

/**
 * The real offline runtime on a free port, in a temporary folder, with an in-memory store, a
 * shared test clock and short provider timeouts. Invocations go over real HTTP through
 * @aws-sdk/client-lambda, as a service would call the deployed function.
 */
export async function startTestBroker(
  options: {
    dataDir?: string;
    persist?: boolean;
    config?: BrokerConfig;
    kinds?: KindRegistry;
    /** Real time instead of the test clock (for tests with other processes in them). */
    realTime?: boolean;
    secretsFile?: string;
    /** A store of the test's own (startLocalBroker's storeEndpoint). */
    storeEndpoint?: string;
  } = {},
): Promise<TestBroker> {
  const clock = new TestClock();
  const dataDir = options.dataDir ?? mkdtempSync(join(tmpdir(), 'broker-test-'));
  const local = await startLocalBroker({
    port: 0,
    dataDir,
    persist: options.persist ?? false,
    config: options.config ?? testConfig(),
    ...(options.kinds ? { kinds: options.kinds } : {}),
    now: options.realTime ? Date.now : clock.now,
    http: { timeoutMs: 400, retries: 2, minRetryDelayMs: 5 },
    // Tests run the refresher when they mean to; a real-time schedule would race their clock.
    refresherIntervalSeconds: 0,
    ...(options.secretsFile ? { secretsFile: options.secretsFile } : {}),
    ...(options.storeEndpoint ? { storeEndpoint: options.storeEndpoint } : {}),
  });
  const lambda = new LambdaClient({
    endpoint: local.url,
    region: 'us-east-1',
    credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
  });
  const invokeFunction = async (name: string, payload: unknown) => {
    const out = await lambda.send(
      new InvokeCommand({ FunctionName: name, Payload: Buffer.from(JSON.stringify(payload)) }),
    );
    return JSON.parse(Buffer.from(out.Payload ?? []).toString('utf8')) as Record<string, unknown>;
  };
  return {
    ...local,
    clock,
    lambda,
    dataDir,
    invoke: (payload: unknown) => invokeFunction('token', payload),
    invokeFunction,
    async itemCount() {
      const out = await local.dynamo.send(
        new ScanCommand({ TableName: local.tableName, Select: 'COUNT' }),
      );
      return out.Count ?? 0;
    },
    async close() {
      lambda.destroy();
      await local.close();
      if (!options.dataDir) rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/**
 * Sets the broker logger's level until the returned function restores it. Its base level, not
 * setLogLevel: injectLambdaContext puts the level the logger was built with back at every
 * invocation, and Powertools has no public setter for that one.
 */
export function setLoggerLevel(level: 'DEBUG' | 'INFO' | 'WARN' | 'ERROR'): () => void {
  const base = logger as unknown as { setInitialLogLevel(level: string): void };
  const previous = logger.getLevelName();
  base.setInitialLogLevel(level);
  logger.setLogLevel(level);
  return () => {
    base.setInitialLogLevel(previous);
    logger.setLogLevel(previous);
  };
}

/**
 * Collects everything written to stdout and stderr while `run` runs, the logs included at every
 * level (the suite runs with POWERTOOLS_LOG_LEVEL=ERROR, vitest.config.ts), and keeps it off the
 * terminal: a test that looks at log lines asks for them here, and a green run stays quiet.
 */
export async function captureOutput<T>(
  run: () => Promise<T>,
): Promise<{ result: T; output: string }> {
  const chunks: string[] = [];
  const original = { out: process.stdout.write, err: process.stderr.write };
  const tap = ((chunk: unknown, ...rest: unknown[]) => {
    chunks.push(
      typeof chunk === 'string' ? chunk : Buffer.from(chunk as Uint8Array).toString('utf8'),
    );
    const done = rest.find((arg) => typeof arg === 'function') as (() => void) | undefined;
    done?.();
    return true;
  }) as typeof process.stdout.write;
  process.stdout.write = tap;
  process.stderr.write = tap;
  const restoreLevel = setLoggerLevel('DEBUG');
  try {
    const result = await run();
    return { result, output: chunks.join('') };
  } finally {
    restoreLevel();
    process.stdout.write = original.out;
    process.stderr.write = original.err;
  }
}
