/**
 * Workload 6, crash takeover: a holder in a process of its own (test/helpers/renewing-holder.ts)
 * takes the lease on an expired connection and calls the provider; it is killed (SIGKILL) in the
 * middle of that call. A caller in this process, already waiting on the lease, takes over once
 * the dead holder's lease lapses. Measured: from the kill to the waiting caller's answer, and
 * the same as a ratio of the lease time (the bound the protocol promises).
 */
import { spawn } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import type { BrokerConfig } from '../shared/config.ts';
import { defaultLeaseMs } from '../shared/refresh.ts';
import { median, startBenchRuntime, times, type BenchRow, type WorkloadResult } from './harness.ts';

export interface TakeoverOptions {
  config: BrokerConfig;
  /** The raw configuration the holder process parses (the same as `config`). */
  configInput: unknown;
  /** A client-credentials provider of kind quiqup. */
  provider: string;
  crashes: number;
}

const holderScript = fileURLToPath(new URL('../test/helpers/renewing-holder.ts', import.meta.url));

export async function benchTakeover(options: TakeoverOptions): Promise<WorkloadResult> {
  const runtime = await startBenchRuntime({ config: options.config });
  try {
    const sandbox = runtime.local.sandboxes.quiqup;
    const container = await runtime.container();
    const endpoint = await runtime.local.dynamo.config.endpoint!();
    const takeoversMs: number[] = [];
    let failures = 0;
    for (let crash = 0; crash < options.crashes; crash += 1) {
      // An expired token, so the holder and the waiting caller both want to renew it.
      const read = await container.broker.store.get(options.provider, 'default');
      const expired = {
        accessToken: `expired-${crash}`,
        tokenType: 'Bearer',
        expiresAt: Date.now() - 1,
      };
      if (read) await container.broker.store.saveTokens(read, expired, Date.now());
      else await container.broker.store.create(options.provider, 'default', expired, Date.now());
      sandbox.fault = { type: 'delay', ms: 12_000 }; // the holder's call outlives the takeover
      const callsBefore = sandbox.callCount('token');
      const child = spawn(process.execPath, ['--import', 'tsx', holderScript], {
        env: {
          ...process.env,
          HOLDER_DATA_DIR: runtime.dataDir,
          HOLDER_CONFIG: JSON.stringify(options.configInput),
          HOLDER_DYNAMO_ENDPOINT: `${endpoint.protocol}//${endpoint.hostname}:${endpoint.port}`,
          HOLDER_TABLE: runtime.local.tableName,
          HOLDER_SANDBOX_URL: `${runtime.local.url}/sandbox`,
          HOLDER_PROVIDER: options.provider,
          HOLDER_CONNECTION_ID: 'default',
        },
        stdio: 'ignore',
      });
      const exited = new Promise((done) => child.once('exit', done));
      while (sandbox.callCount('token') === callsBefore) {
        await new Promise((done) => setTimeout(done, 10));
      }
      // Mid-call, with a while of heartbeats behind it (the worst case is a beat just before).
      await new Promise((done) => setTimeout(done, 500 + crash * 700));
      sandbox.fault = undefined;
      const waiting = container.broker.tokens.getToken({ provider: options.provider });
      child.kill('SIGKILL');
      const killedAt = performance.now();
      try {
        await waiting;
        takeoversMs.push(performance.now() - killedAt);
      } catch {
        failures += 1;
      }
      await exited;
    }
    const worst = Math.max(...takeoversMs);
    const workload = '6 crash takeover';
    const rows: BenchRow[] = [
      {
        workload,
        metric: `takeover after a killed holder, median / worst of ${options.crashes}`,
        measured: `${(median(takeoversMs) / 1000).toFixed(2)} s / ${(worst / 1000).toFixed(2)} s`,
        goal: '≤ 10 s',
        met: failures === 0 && worst <= 10_000,
      },
      {
        workload,
        metric: `worst takeover / lease time (${defaultLeaseMs / 1000} s)`,
        measured: times(worst / defaultLeaseMs),
        goal: '≤ 1.00× (+ one poll)',
      },
      {
        workload,
        metric: 'waiting callers that gave up',
        measured: String(failures),
        goal: '0',
        met: failures === 0,
      },
    ];
    return {
      rows,
      details: { crashes: options.crashes, takeoversMs, failures, leaseMs: defaultLeaseMs },
      notes: [],
    };
  } finally {
    await runtime.close();
  }
}
