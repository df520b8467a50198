/**
 * Workload 1, warm token fetch against the floor: the `token` handler, in this process, warm, for
 * a valid stored token, interleaved with a raw GetItem of the same item on the same store client.
 * The token was written by another container, so the measured one unwraps its data key once
 * (as a container does that did not write the token itself) and, ideally, never again.
 */
import { performance } from 'node:perf_hooks';
import { GetItemCommand } from '@aws-sdk/client-dynamodb';
import { handler as tokenHandler } from '../functions/token.ts';
import { lambdaContext } from '../infra/local/lambda-context.ts';
import { setBroker } from '../shared/broker-core.ts';
import type { BrokerConfig } from '../shared/config.ts';
import { connectionPk } from '../shared/store/table.ts';
import {
  ms,
  percentile,
  startBenchRuntime,
  times,
  type BenchRow,
  type WorkloadResult,
} from './harness.ts';

export interface WarmTokenOptions {
  config: BrokerConfig;
  provider: string;
  /** Measured fetches (each paired with one GetItem). */
  fetches: number;
  warmup: number;
}

export async function benchWarmToken(options: WarmTokenOptions): Promise<WorkloadResult> {
  const runtime = await startBenchRuntime({ config: options.config });
  try {
    // Another container mints and stores the token; the measured one only reads it.
    const writer = await runtime.container();
    await writer.broker.tokens.getToken({ provider: options.provider });
    const reader = await runtime.container();
    setBroker(reader.broker); // the handler finds it as its container's broker

    const context = lambdaContext('token');
    const event = { provider: options.provider };
    const getItemInput = {
      TableName: runtime.local.tableName,
      Key: { pk: { S: connectionPk(options.provider, 'default') } },
      ConsistentRead: true, // as the token path reads
    };
    const fetchToken = async () => {
      const answer = (await tokenHandler(event, context)) as { ok: boolean };
      if (!answer.ok) throw new Error(`token answered ${JSON.stringify(answer)}`);
    };
    const readItem = async () => {
      // A new command per call, as the store builds one per read.
      const out = await reader.dynamo.send(new GetItemCommand(getItemInput));
      if (!out.Item) throw new Error('GetItem found no item');
    };

    const handlerMs: number[] = [];
    const getItemMs: number[] = [];
    const timed = async (run: () => Promise<void>, into: number[] | undefined) => {
      const started = performance.now();
      await run();
      into?.push(performance.now() - started);
    };
    const pair = async (i: number, record: boolean) => {
      // Alternate which goes first, so neither always runs right after the other.
      const first: [() => Promise<void>, number[]] =
        i % 2 === 0 ? [fetchToken, handlerMs] : [readItem, getItemMs];
      const second: [() => Promise<void>, number[]] =
        i % 2 === 0 ? [readItem, getItemMs] : [fetchToken, handlerMs];
      await timed(first[0], record ? first[1] : undefined);
      await timed(second[0], record ? second[1] : undefined);
    };

    for (let i = 0; i < options.warmup; i += 1) await pair(i, false);
    const decryptsBefore = reader.keys.decrypted;
    for (let i = 0; i < options.fetches; i += 1) await pair(i, true);
    const measuredDecrypts = reader.keys.decrypted - decryptsBefore;

    const p50 = { handler: percentile(handlerMs, 50), getItem: percentile(getItemMs, 50) };
    const p99 = { handler: percentile(handlerMs, 99), getItem: percentile(getItemMs, 99) };
    const totalFetches = options.warmup + options.fetches;
    const perThousand = (measuredDecrypts / options.fetches) * 1000;
    const workload = '1 warm token fetch';
    const rows: BenchRow[] = [
      {
        workload,
        metric: 'token handler p50 / p99',
        measured: `${ms(p50.handler)} / ${ms(p99.handler)}`,
        goal: '',
      },
      {
        workload,
        metric: 'raw GetItem p50 / p99 (floor)',
        measured: `${ms(p50.getItem)} / ${ms(p99.getItem)}`,
        goal: '',
      },
      {
        workload,
        metric: 'ratio p50 (p99)',
        measured: `${times(p50.handler / p50.getItem)} (${times(p99.handler / p99.getItem)})`,
        goal: 'p50 ≤ 1.10×',
        met: p50.handler / p50.getItem <= 1.1,
      },
      {
        workload,
        metric: 'key-manager decrypts per 1,000 fetches',
        measured: perThousand.toFixed(2),
        goal: '',
      },
      {
        workload,
        metric: `decrypts after the first per data key (${totalFetches} fetches)`,
        measured: String(reader.keys.repeatDecrypts),
        goal: '0',
        met: reader.keys.repeatDecrypts === 0,
      },
    ];
    return {
      rows,
      details: {
        fetches: options.fetches,
        warmup: options.warmup,
        handlerMs: { p50: p50.handler, p99: p99.handler },
        getItemMs: { p50: p50.getItem, p99: p99.getItem },
        ratio: { p50: p50.handler / p50.getItem, p99: p99.handler / p99.getItem },
        decrypts: {
          total: reader.keys.decrypted,
          duringMeasured: measuredDecrypts,
          perThousandFetches: perThousand,
          distinctDataKeys: reader.keys.unwrappedKeys.size,
          afterFirstPerDataKey: reader.keys.repeatDecrypts,
        },
      },
      notes: [],
    };
  } finally {
    setBroker(undefined);
    await runtime.close();
  }
}
