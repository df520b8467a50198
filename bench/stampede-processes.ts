/**
 * Workload 2b, stampede with containers as processes, one caller each: as Lambda runs them, each
 * container is a process of its own (bench/stampede-container.ts) serving one invocation at a
 * time, so the stampede is cross-container only: every container finds the token expired, one
 * takes the lease and calls the provider, the others wait on the lease until the new token is
 * stored. Repeated for `rounds` expiries (after three that warm the containers, and a provider
 * call from each), so the percentiles have samples. The store (dynalite) and the sandbox stay in
 * this process. One container times the sandbox call alone: the ratio's denominator, from a
 * container process like the stampede's call.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import type { BrokerConfig } from '../shared/config.ts';
import type { ContainerMessage, ContainerReport } from './stampede-container.ts';
import {
  ms,
  percentile,
  startBenchRuntime,
  times,
  type BenchRow,
  type WorkloadResult,
} from './harness.ts';

export interface ProcessStampedeOptions {
  config: BrokerConfig;
  /** The raw configuration the container processes parse (the same as `config`). */
  configInput: unknown;
  /** A client-credentials provider of kind quiqup (its sandbox counts `token` calls). */
  provider: string;
  containers: number;
  /** Expiries measured, each with one caller per container. */
  rounds: number;
  providerDelayMs: number;
  baselineCalls: number;
}

type Done = Extract<ContainerReport, { type: 'done' }>;

const warmupRounds = 3;
const containerScript = fileURLToPath(new URL('./stampede-container.ts', import.meta.url));

export async function benchProcessStampede(
  options: ProcessStampedeOptions,
): Promise<WorkloadResult> {
  const runtime = await startBenchRuntime({ config: options.config });
  const children: ChildProcess[] = [];
  try {
    const sandbox = runtime.local.sandboxes.quiqup;
    sandbox.fault = { type: 'delay', ms: options.providerDelayMs };
    const endpoint = await runtime.local.dynamo.config.endpoint!();
    const inbox = new Map<ChildProcess, ContainerReport[]>();
    const next = (child: ChildProcess, type: ContainerReport['type']) =>
      new Promise<ContainerReport>((resolve, reject) => {
        const deadline = performance.now() + 60_000;
        const poll = () => {
          const queue = inbox.get(child)!;
          const index = queue.findIndex((report) => report.type === type);
          if (index >= 0) return resolve(queue.splice(index, 1)[0]!);
          if (child.exitCode !== null) return reject(new Error('a container exited early'));
          if (performance.now() > deadline) return reject(new Error(`no ${type} from a container`));
          setTimeout(poll, 5);
        };
        poll();
      });
    for (let i = 0; i < options.containers; i += 1) {
      const child = fork(containerScript, {
        execArgv: ['--import', 'tsx'],
        env: {
          ...process.env,
          STAMPEDE_DATA_DIR: runtime.dataDir,
          STAMPEDE_CONFIG: JSON.stringify(options.configInput),
          STAMPEDE_DYNAMO_ENDPOINT: `${endpoint.protocol}//${endpoint.hostname}:${endpoint.port}`,
          STAMPEDE_TABLE: runtime.local.tableName,
          STAMPEDE_SANDBOX_URL: `${runtime.local.url}/sandbox`,
          STAMPEDE_PROVIDER: options.provider,
        },
        stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
      });
      inbox.set(child, []);
      child.on('message', (report: ContainerReport) => inbox.get(child)!.push(report));
      children.push(child);
    }
    const order = (child: ChildProcess, message: ContainerMessage) => child.send(message);
    await Promise.all(children.map((child) => next(child, 'ready')));

    const store = (await runtime.container()).broker.store;
    /** One expiry: the token expires, then every container asks for it at the same instant. */
    const stampede = async (): Promise<{ calls: number; reports: Done[] }> => {
      const now = Date.now();
      const expired = {
        accessToken: 'expired-bench-token',
        tokenType: 'Bearer',
        expiresAt: now - 60_000,
      };
      const read = await store.get(options.provider, 'default');
      if (read) await store.saveTokens(read, expired, now);
      else await store.create(options.provider, 'default', expired, now);
      const callsBefore = sandbox.callCount('token');
      const at = performance.timeOrigin + performance.now() + 100;
      for (const child of children) order(child, { type: 'go', at, fetches: 1 });
      const reports = (await Promise.all(children.map((child) => next(child, 'done')))) as Done[];
      return { calls: sandbox.callCount('token') - callsBefore, reports };
    };
    // Warm every container first (code paths compiled, connections open): the first expiries in
    // fresh processes run ~1.5× slower while V8 compiles the renewal path.
    for (let round = 0; round < warmupRounds; round += 1) await stampede();

    // Every container makes a provider call before the measured expiries: a process's first call
    // loads Node's HTTP client (fetch) and compiles the call path, which made a measured call
    // ~45 ms slower when it fell to a container that had not won a warm-up expiry. The first
    // container's calls are the call alone.
    for (const child of children.slice(1)) {
      order(child, { type: 'baseline', calls: 1 });
      await next(child, 'baseline');
    }
    order(children[0]!, { type: 'baseline', calls: options.baselineCalls });
    const baseline = await next(children[0]!, 'baseline');
    const callAlone = baseline.type === 'baseline' ? baseline.callMs : [];
    const readAlone = baseline.type === 'baseline' ? baseline.readMs : [];

    const rounds: { calls: number; reports: Done[] }[] = [];
    for (let round = 0; round < options.rounds; round += 1) rounds.push(await stampede());

    const reports = rounds.flatMap((round) => round.reports);
    const latencies = reports.flatMap((report) => report.latencies);
    const callsPerRound = rounds.map((round) => round.calls);
    const distinctPerRound = rounds.map(
      (round) => new Set(round.reports.flatMap((report) => report.tokenHashes)).size,
    );
    const windows = rounds.map((round) => round.reports.flatMap((report) => report.callWindows));
    const callStart = windows.flat().map((w) => w.from);
    const callEnd = windows.flat().map((w) => w.to);
    const storedAt = reports.flatMap((report) => report.storedAt);
    const lastAnswer = rounds.map((round) =>
      Math.max(...round.reports.flatMap((report) => report.latencies)),
    );
    const aloneP50 = percentile(callAlone, 50);
    const p50 = percentile(latencies, 50);
    const p99 = percentile(latencies, 99);
    const maxReads = Math.max(...reports.map((report) => report.reads));
    const workload = '2b stampede, processes';
    const rows: BenchRow[] = [
      {
        workload,
        metric: `provider calls per expiry (${options.rounds} expiries, ${options.containers} container processes, one caller each)`,
        measured: `${Math.min(...callsPerRound)}–${Math.max(...callsPerRound)}`,
        goal: '1',
        met: callsPerRound.every((calls) => calls === 1),
      },
      {
        workload,
        metric: 'distinct tokens answered per expiry (max)',
        measured: String(Math.max(...distinctPerRound)),
        goal: '',
      },
      {
        workload,
        metric: 'sandbox call alone from a container p50 / p99',
        measured: `${ms(aloneP50)} / ${ms(percentile(callAlone, 99))}`,
        goal: '',
      },
      {
        workload,
        // The store's own latency, which four steps in a row pay: the read that finds the token
        // expired, the lease write, the save, the waiter's read that finds the new token.
        metric: 'a store read alone from a container p50 / p99',
        measured: `${ms(percentile(readAlone, 50))} / ${ms(percentile(readAlone, 99))}`,
        goal: '',
      },
      {
        workload,
        metric: 'provider call began / ended, p50 (ms into the expiry)',
        measured: `${ms(percentile(callStart, 50))} / ${ms(percentile(callEnd, 50))}`,
        goal: '',
      },
      {
        workload,
        metric: 'new token stored / last answer, p50 (ms into the expiry)',
        measured: `${ms(percentile(storedAt, 50))} / ${ms(percentile(lastAnswer, 50))}`,
        goal: '',
      },
      {
        workload,
        metric: `fetch p50 / p99 of ${latencies.length} (× call alone p50)`,
        measured: `${ms(p50)} / ${ms(p99)} (${times(p50 / aloneP50)} / ${times(p99 / aloneP50)})`,
        goal: 'p99 ≤ 1.50×',
        met: p99 / aloneP50 <= 1.5,
      },
      {
        workload,
        metric: 'store reads per container per expiry (max)',
        measured: String(maxReads),
        goal: '',
      },
    ];
    return {
      rows,
      details: {
        containers: options.containers,
        rounds: options.rounds,
        providerDelayMs: options.providerDelayMs,
        callsPerRound,
        distinctPerRound,
        callAloneMs: { p50: aloneP50, p99: percentile(callAlone, 99), samples: callAlone },
        readAloneMs: { p50: percentile(readAlone, 50), samples: readAlone },
        warmupRounds,
        fetchMs: { p50, p99, max: Math.max(...latencies) },
        callWindowsMs: windows,
        storedAtMs: storedAt,
        lastAnswerMs: lastAnswer,
        maxReads,
      },
      notes: [],
    };
  } finally {
    for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
    await runtime.close();
  }
}
