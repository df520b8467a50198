/**
 * One "Lambda container" of the process stampede (bench/stampede-processes.ts), in a process of
 * its own: a broker over the bench's store, sandbox, master key and secrets (from the environment
 * the workload passes), driven over IPC. Times are epoch milliseconds (performance.timeOrigin +
 * performance.now()), which every process on the machine reads from the same clock.
 *
 * Messages in: `{ type: 'baseline', calls }` (time that many provider calls made alone, and as many
 * reads of the connection),
 * `{ type: 'go', at, fetches }` (at `at`, ask for the token `fetches` times at once; the workload
 * runs one such stampede to warm every container's code paths, as in a container that has served
 * for a while, before the measured one).
 * Messages out: `ready`, `baseline` with the call times, `done` with what the stampede saw.
 * Run with `node --import tsx`.
 */
import './quiet-logs.ts'; // first: sets the log level before the broker's logger is built
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { createBroker } from '../shared/broker.ts';
import { parseConfig } from '../shared/config.ts';
import { LocalKeyManager } from '../shared/crypto/local-key-manager.ts';
import { getProvider } from '../shared/providers/resolve.ts';
import { SecretsFileBackend } from '../shared/secrets.ts';
import { ReadCounter, recordRenewalTimes, type RenewalTimes } from './harness.ts';

export type ContainerMessage =
  { type: 'baseline'; calls: number } | { type: 'go'; at: number; fetches: number };

export type ContainerReport =
  | { type: 'ready' }
  | { type: 'baseline'; callMs: number[]; readMs: number[] }
  | {
      type: 'done';
      /** Per fetch: answered at (ms after `at`). */
      latencies: number[];
      /** Per fetch: a hash of the token answered (to count distinct tokens, never the token). */
      tokenHashes: string[];
      /** This container's provider calls during the stampede (ms after `at`). */
      callWindows: { from: number; to: number }[];
      /** Ends of this container's fenced saves (ms after `at`). */
      storedAt: number[];
      /** GetItem requests this container sent during the stampede. */
      reads: number;
    };

const env = (name: string): string => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};
const clock = () => performance.timeOrigin + performance.now();
const send = (report: ContainerReport) => process.send!(report);

const dataDir = env('STAMPEDE_DATA_DIR');
const providerId = env('STAMPEDE_PROVIDER');
const dynamo = new DynamoDBClient({
  endpoint: env('STAMPEDE_DYNAMO_ENDPOINT'),
  region: 'local',
  credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
});
const reads = new ReadCounter();
reads.attach(dynamo);
const broker = createBroker({
  config: parseConfig(JSON.parse(env('STAMPEDE_CONFIG'))),
  dynamo,
  tableName: env('STAMPEDE_TABLE'),
  keys: LocalKeyManager.fromEnvironmentOrFile(process.env, join(dataDir, 'local-master.key')),
  secrets: new SecretsFileBackend(join(dataDir, 'secrets.json')),
  sandboxBaseUrl: env('STAMPEDE_SANDBOX_URL'),
});

// When the provider calls ran and the fenced saves ended, as the in-process stampede records them.
let at = 0;
const times: RenewalTimes = { callWindows: [], storedAt: [] };
const { callWindows, storedAt } = times;
const mint = recordRenewalTimes(broker, providerId, () => clock() - at, times);
const provider = getProvider(broker.providers, providerId);

// Warm the connection to the store (a read of nothing), as a container that has served before.
await broker.store.get(providerId, 'bench-warmup');

process.on('message', (message: ContainerMessage) => {
  if (message.type === 'baseline') {
    void (async () => {
      const callMs: number[] = [];
      for (let i = 0; i < message.calls; i += 1) {
        const started = clock();
        await mint(provider.context);
        callMs.push(clock() - started);
      }
      // A waiter's poll: one read of the connection (its decryption remembered after the first).
      const readMs: number[] = [];
      for (let i = 0; i < message.calls; i += 1) {
        const started = clock();
        await broker.store.get(providerId, 'default');
        readMs.push(clock() - started);
      }
      send({ type: 'baseline', callMs, readMs });
    })();
    return;
  }
  at = message.at;
  const { fetches } = message;
  setTimeout(() => void stampede(fetches), Math.max(0, at - clock()));
});
send({ type: 'ready' });

async function stampede(fetches: number): Promise<void> {
  reads.reset();
  callWindows.length = 0;
  storedAt.length = 0;
  const latencies: number[] = [];
  const tokenHashes = await Promise.all(
    Array.from({ length: fetches }, async () => {
      const answer = await broker.tokens.getToken({ provider: providerId });
      latencies.push(clock() - at);
      return createHash('sha256').update(answer.accessToken).digest('hex').slice(0, 16);
    }),
  );
  send({
    type: 'done',
    latencies,
    tokenHashes,
    callWindows,
    storedAt,
    reads: reads.requests.GetItemCommand ?? 0,
  });
}
