/**
 * Workload 5, first use: many callers in several containers ask at once for the token of a
 * client-credentials connection that does not exist yet. The first caller claims the connection
 * (an item with its lease, no tokens) before minting; everyone else waits for it as for any
 * lease, so the provider should see one call however many containers there are.
 */
import { performance } from 'node:perf_hooks';
import type { BrokerConfig } from '../shared/config.ts';
import {
  ms,
  percentile,
  startBenchRuntime,
  times,
  type BenchRow,
  type WorkloadResult,
} from './harness.ts';

export interface FirstUseOptions {
  config: BrokerConfig;
  /** A client-credentials provider of kind quiqup (its sandbox counts `token` calls). */
  provider: string;
  callers: number;
  containers: number;
  providerDelayMs: number;
}

export async function benchFirstUse(options: FirstUseOptions): Promise<WorkloadResult> {
  const runtime = await startBenchRuntime({ config: options.config });
  try {
    const sandbox = runtime.local.sandboxes.quiqup;
    const containers = await Promise.all(
      Array.from({ length: options.containers }, () => runtime.container()),
    );
    // Warm each container's connection to the store (a read of nothing).
    await Promise.all(containers.map((c) => c.broker.store.get(options.provider, 'bench-warmup')));
    sandbox.fault = { type: 'delay', ms: options.providerDelayMs };
    const before = sandbox.callCount('token');
    const started = performance.now();
    const latencies: number[] = [];
    const answers = await Promise.all(
      Array.from({ length: options.callers }, async (_, i) => {
        const answer = await containers[i % containers.length]!.broker.tokens.getToken({
          provider: options.provider,
        });
        latencies.push(performance.now() - started);
        return answer.accessToken;
      }),
    );
    const providerCalls = sandbox.callCount('token') - before;
    const distinct = new Set(answers).size;
    const p99 = percentile(latencies, 99);
    const workload = '5 first use';
    const rows: BenchRow[] = [
      {
        workload,
        metric: `provider calls (${options.callers} callers, ${options.containers} containers, no connection yet)`,
        measured: String(providerCalls),
        goal: '1',
        met: providerCalls === 1,
      },
      {
        workload,
        metric: 'distinct tokens answered',
        measured: String(distinct),
        goal: '1',
        met: distinct === 1,
      },
      {
        workload,
        metric: `fetch p99 (× the ${options.providerDelayMs} ms provider delay)`,
        measured: `${ms(p99)} (${times(p99 / options.providerDelayMs)})`,
        goal: '',
      },
    ];
    return {
      rows,
      details: {
        ...options,
        config: undefined,
        providerCalls,
        distinct,
        fetchMs: { p50: percentile(latencies, 50), p99 },
      },
      notes: [],
    };
  } finally {
    await runtime.close();
  }
}
