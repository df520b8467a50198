/**
 * Workload 3, refresher throughput: N connections due, a sandbox provider answering in D ms,
 * concurrency C. All N belong to one provider, so `refresh.concurrency` and
 * `refresh.perProviderConcurrency` are both set to C (the per-provider cap would otherwise be
 * the limit). The clock is fixed, so every connection is due when the run starts. The store
 * (dynalite) and the sandbox providers run in processes of their own, as DynamoDB and the
 * provider are other services in deployment: this process's CPU is the refresher's alone.
 */
import { performance } from 'node:perf_hooks';
import pLimit from 'p-limit';
import type { BrokerConfig } from '../shared/config.ts';
import { getProvider } from '../shared/providers/resolve.ts';
import { nextDueAt } from '../shared/refresh.ts';
import {
  ms,
  percentile,
  startBenchRuntime,
  times,
  type BenchRow,
  type WorkloadResult,
} from './harness.ts';

export interface RefresherOptions {
  config: BrokerConfig;
  /** The raw configuration `config` was parsed from (the sandbox process parses it). */
  configInput: unknown;
  /** A provider of kind quiqup: every renewal is one client-credentials mint. */
  provider: string;
  connections: number;
  concurrency: number;
  providerDelayMs: number;
}

/** Provider calls timed one after another before the run. */
const LONE_CALLS = 20;

/** A fixed instant: everything created below is due at it. */
const T0 = Date.UTC(2026, 10, 23, 12, 0, 0);

export async function benchRefresher(options: RefresherOptions): Promise<WorkloadResult> {
  const { connections: n, concurrency: c, providerDelayMs } = options;
  const config: BrokerConfig = {
    ...options.config,
    refresh: { ...options.config.refresh, concurrency: c, perProviderConcurrency: c },
  };
  const now = () => T0;
  const runtime = await startBenchRuntime({
    config,
    now,
    storeProcess: true,
    sandboxProcess: { configInput: options.configInput },
  });
  const sandbox = runtime.sandbox!;
  try {
    await sandbox.delay(providerDelayMs);

    // Seed with a separate container, so the refresher's own key caches start cold, as in AWS.
    const seeder = await runtime.container();
    const provider = getProvider(seeder.broker.providers, options.provider);
    const tokens = { accessToken: 'due-bench-token', tokenType: 'Bearer', expiresAt: T0 + 60_000 };
    const dueAt = nextDueAt(provider, tokens);
    const limit = pLimit(32);
    const seedStarted = performance.now();
    await Promise.all(
      Array.from({ length: n }, (_, i) =>
        limit(() =>
          seeder.broker.store.create(
            options.provider,
            `bench-${String(i).padStart(6, '0')}`,
            tokens,
            T0,
            dueAt,
          ),
        ),
      ),
    );
    const seedMs = performance.now() - seedStarted;

    // The call alone, on a process doing nothing else: the floor of one provider call here (the
    // sandbox's delay plus the HTTP exchange), before the run loads the event loop.
    const seederKind = provider.kind;
    if (seederKind.variant !== 'client-credentials')
      throw new Error('bench needs a minting provider');
    const lone: number[] = [];
    for (let i = 0; i < LONE_CALLS; i += 1) {
      const callStarted = performance.now();
      await seederKind.mint(provider.context);
      lone.push(performance.now() - callStarted);
    }
    const loneMs = percentile(lone, 50);

    const container = await runtime.container();
    // Where each renewal's time goes: the two conditional writes of the protocol and the call.
    const phases = { lease: [] as number[], provider: [] as number[], save: [] as number[] };
    const store = container.broker.store;
    store.acquireLease = timed(store.acquireLease.bind(store), phases.lease);
    store.saveTokens = timed(store.saveTokens.bind(store), phases.save);
    const resolved = getProvider(container.broker.providers, options.provider);
    const kind = resolved.kind;
    if (kind.variant !== 'client-credentials') throw new Error('bench needs a minting provider');
    resolved.kind = { ...kind, mint: timed(kind.mint, phases.provider) };
    const callsBefore = await sandbox.tokenCalls();
    const cpuBefore = process.cpuUsage();
    const storeCpuBefore = await runtime.storeCpuMs!();
    const sandboxCpuBefore = await sandbox.cpuMs();
    const started = performance.now();
    const summary = await container.broker.refresher.run({ remainingMs: () => 60 * 60_000 });
    const wallMs = performance.now() - started;
    const cpu = process.cpuUsage(cpuBefore);
    const storeCpuMs = (await runtime.storeCpuMs!()) - storeCpuBefore;
    const sandboxCpuMs = (await sandbox.cpuMs()) - sandboxCpuBefore;
    const providerCalls = (await sandbox.tokenCalls()) - callsBefore;

    const idealMs = (n * providerDelayMs) / c;
    const itemsRead = container.reads.total;
    const workload = '3 refresher';
    const rows: BenchRow[] = [
      {
        workload,
        metric: `wall time (N=${n}, ${providerDelayMs} ms provider, C=${c})`,
        measured: `${ms(wallMs)}`,
        goal: `≤ 1.2 × ideal ${ms(idealMs)}`,
        met: wallMs <= 1.2 * idealMs,
      },
      { workload, metric: 'wall time / ideal', measured: times(wallMs / idealMs), goal: '≤ 1.20×' },
      {
        // How well the store writes overlap the calls, whatever the machine's load does to the
        // calls themselves (on a busy machine the 50 ms sandbox call takes longer in this process).
        workload,
        metric: 'wall time / (N × measured call p50 / C)',
        measured: times(wallMs / ((n * percentile(phases.provider, 50)) / c)),
        goal: '',
      },
      {
        // Time-weighted share of the C call slots holding a provider call: the slots never wait
        // for a page or a store write when this is near 100 %; then the wall time is the calls'.
        workload,
        metric: 'call slots busy (Σ call time / (C × wall)); call mean',
        measured: `${((100 * sum(phases.provider)) / (c * wallMs)).toFixed(1)} %; ${ms(sum(phases.provider) / phases.provider.length)}`,
        goal: '',
      },
      {
        workload,
        metric: `provider call alone p50 (${LONE_CALLS} in a row before the run)`,
        measured: ms(loneMs),
        goal: '',
      },
      {
        workload,
        metric: 'wall time / (N × call alone p50 / C)',
        measured: times(wallMs / ((n * loneMs) / c)),
        goal: '',
      },
      {
        workload,
        metric: 'refreshed / failed / skipped of due',
        measured: `${summary.refreshed} / ${summary.failed} / ${summary.skipped} of ${summary.due}`,
        goal: `${n} / 0 / 0 of ${n}`,
        met: summary.refreshed === n && summary.due === n,
      },
      {
        workload,
        metric: 'items read / due',
        measured: `${itemsRead} / ${summary.due} (${times(itemsRead / Math.max(1, summary.due))})`,
        goal: '≤ 1.05×',
        met: itemsRead <= 1.05 * summary.due,
      },
      {
        workload,
        metric: 'per renewal p50: lease / provider call / save',
        measured: [phases.lease, phases.provider, phases.save]
          .map((list) => ms(percentile(list, 50)))
          .join(' / '),
        goal: '',
      },
      {
        workload,
        metric: 'CPU during the run / wall: refresher; store; sandbox (a process each)',
        measured: [cpu.user / 1000 + cpu.system / 1000, storeCpuMs, sandboxCpuMs]
          .map((used) => `${ms(used)} (${times(used / wallMs)})`)
          .join('; '),
        goal: '',
      },
    ];
    return {
      rows,
      details: {
        connections: n,
        concurrency: c,
        perProviderConcurrency: c,
        providers: 1,
        providerDelayMs,
        seedMs,
        wallMs,
        idealMs,
        ratio: wallMs / idealMs,
        loneCallMs: { p50: loneMs, samples: lone },
        summary,
        providerCalls,
        itemsRead: { total: itemsRead, byCommand: { ...container.reads.items } },
        requests: { ...container.reads.requests },
        keyManager: { generated: container.keys.generated, decrypted: container.keys.decrypted },
        cpuMs: { user: cpu.user / 1000, system: cpu.system / 1000 },
        storeCpuMs,
        sandboxCpuMs,
        phaseMs: Object.fromEntries(
          Object.entries(phases).map(([phase, list]) => [
            phase,
            { p50: percentile(list, 50), p99: percentile(list, 99), count: list.length },
          ]),
        ),
      },
      notes: [],
    };
  } finally {
    await runtime.close();
  }
}

/** Wraps an async function to record how long each call takes. */
function timed<A extends unknown[], R>(
  run: (...args: A) => Promise<R>,
  into: number[],
): (...args: A) => Promise<R> {
  return async (...args) => {
    const started = performance.now();
    try {
      return await run(...args);
    } finally {
      into.push(performance.now() - started);
    }
  };
}

const sum = (samples: readonly number[]) => samples.reduce((a, b) => a + b, 0);
