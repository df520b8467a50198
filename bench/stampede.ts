/**
 * Workload 2, stampede: many concurrent fetches of one expired token, spread over several
 * containers (independent createBroker instances, each with its own DynamoDB client, over the
 * same table). The in-container single flight and the cross-container lease should let exactly
 * one provider call through; everyone else waits for its result.
 */
import { performance } from 'node:perf_hooks';
import type { BrokerConfig } from '../shared/config.ts';
import { getProvider } from '../shared/providers/resolve.ts';
import {
  ms,
  percentile,
  recordRenewalTimes,
  startBenchRuntime,
  times,
  type BenchRow,
  type RenewalTimes,
  type WorkloadResult,
} from './harness.ts';

export interface StampedeOptions {
  config: BrokerConfig;
  /** A client-credentials provider of kind quiqup (its sandbox counts `token` calls). */
  provider: string;
  fetches: number;
  containers: number;
  /** The sandbox's added latency per provider call. */
  providerDelayMs: number;
  /** Direct provider calls timed to give the sandbox's own latency. */
  baselineCalls: number;
}

export async function benchStampede(options: StampedeOptions): Promise<WorkloadResult> {
  const runtime = await startBenchRuntime({ config: options.config });
  try {
    const sandbox = runtime.local.sandboxes.quiqup;
    sandbox.fault = { type: 'delay', ms: options.providerDelayMs };
    const containers = await Promise.all(
      Array.from({ length: options.containers }, () => runtime.container()),
    );

    // The sandbox's own latency: the provider call itself, through the broker's provider client.
    const resolved = getProvider(containers[0]!.broker.providers, options.provider);
    const providerMs: number[] = [];
    for (let i = 0; i < options.baselineCalls; i += 1) {
      const started = performance.now();
      await resolved.kind.mint!(resolved.context);
      providerMs.push(performance.now() - started);
    }

    // Warm each container's connection to the store, then store an expired token.
    await Promise.all(containers.map((c) => c.broker.store.get(options.provider, 'bench-warmup')));
    const now = Date.now();
    await containers[0]!.broker.store.create(
      options.provider,
      'default',
      { accessToken: 'expired-bench-token', tokenType: 'Bearer', expiresAt: now - 60_000 },
      now,
    );

    // When, within the stampede, each provider call ran and each fenced save ended.
    const recorded: RenewalTimes = { callWindows: [], storedAt: [] };
    let started = 0;
    for (const container of containers) {
      recordRenewalTimes(
        container.broker,
        options.provider,
        () => performance.now() - started,
        recorded,
      );
    }
    const { callWindows, storedAt } = recorded;

    for (const container of containers) container.reads.reset();
    const callsBefore = sandbox.callCount('token');
    const latencies: number[] = [];
    const byContainer = containers.map((): number[] => []);
    started = performance.now();
    const answers = await Promise.all(
      Array.from({ length: options.fetches }, async (_, i) => {
        const container = containers[i % containers.length]!;
        const answer = await container.broker.tokens.getToken({ provider: options.provider });
        latencies.push(performance.now() - started);
        byContainer[i % containers.length]!.push(performance.now() - started);
        return answer.accessToken;
      }),
    );
    const wallMs = performance.now() - started;
    const providerCalls = sandbox.callCount('token') - callsBefore;
    const readsByContainer = containers.map((c) => c.reads.requests.GetItemCommand ?? 0);
    const distinctTokens = new Set(answers).size;
    const stored = await containers[0]!.broker.store.get(options.provider, 'default');

    const sandboxP50 = percentile(providerMs, 50);
    const p50 = percentile(latencies, 50);
    const p99 = percentile(latencies, 99);
    const workload = '2 stampede';
    const rows: BenchRow[] = [
      {
        workload,
        metric: `provider calls (${options.fetches} fetches, ${options.containers} containers)`,
        measured: String(providerCalls),
        goal: '1',
        met: providerCalls === 1,
      },
      {
        workload,
        metric: 'distinct tokens answered',
        measured: String(distinctTokens),
        goal: '',
      },
      {
        workload,
        metric: 'sandbox call alone p50 / p99',
        measured: `${ms(sandboxP50)} / ${ms(percentile(providerMs, 99))}`,
        goal: '',
      },
      {
        workload,
        metric: 'provider call ran at (ms into the stampede)',
        measured: callWindows.map((w) => `${w.from.toFixed(0)}–${w.to.toFixed(0)}`).join(', '),
        goal: '',
      },
      {
        workload,
        metric: 'new token stored at / last answer (ms into the stampede)',
        measured: `${storedAt.map((t) => t.toFixed(0)).join(', ')} / ${Math.max(...latencies).toFixed(0)}`,
        goal: '',
      },
      {
        workload,
        metric: 'fetch p50 / p99 (× sandbox p50)',
        measured: `${ms(p50)} / ${ms(p99)} (${times(p50 / sandboxP50)} / ${times(p99 / sandboxP50)})`,
        goal: 'p99 ≤ 1.50×',
        met: p99 / sandboxP50 <= 1.5,
      },
      {
        workload,
        metric: 'store reads per container during the stampede (max)',
        measured: String(Math.max(...readsByContainer)),
        goal: '',
      },
    ];
    return {
      rows,
      details: {
        fetches: options.fetches,
        containers: options.containers,
        providerDelayMs: options.providerDelayMs,
        providerCalls,
        distinctTokens,
        storedVersion: stored?.version,
        sandboxMs: { p50: sandboxP50, p99: percentile(providerMs, 99) },
        fetchMs: { p50, p99, max: Math.max(...latencies) },
        // The renewing container answers after its own provider call; the others after their
        // next poll of the item (a twelfth of the expected call as it lands, jittered: waitPollMs).
        fetchMsByContainer: byContainer.map((list) => ({
          min: Math.min(...list),
          p50: percentile(list, 50),
          max: Math.max(...list),
        })),
        readsByContainer,
        wallMs,
        providerCallWindowsMs: callWindows,
        storedAtMs: storedAt,
      },
      notes: [],
    };
  } finally {
    await runtime.close();
  }
}
