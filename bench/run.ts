/**
 * `npm run bench [-- --only warm,warm-xray,stampede,stampede-processes,refresher,cold,first-use,takeover,session-claim --connections 10000 …]`: runs the
 * workloads on the offline runtime's store and sandbox providers, prints one table with the
 * goals beside the measured figures, and writes bench/results.json (git-ignored: numbers are
 * machine-specific). A benchmark, not a test: a missed goal is reported, never an exit code.
 */
import './quiet-logs.ts'; // first: sets the log level before the broker's logger is built
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, totalmem, tmpdir, type as osType, release } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { parseConfig } from '../shared/config.ts';
import { benchColdStart } from './cold-start.ts';
import { benchFirstUse } from './first-use.ts';
import type { BenchRow, WorkloadResult } from './harness.ts';
import { benchRefresher } from './refresher.ts';
import { benchSessionClaim } from './session-claim.ts';
import { benchStampede } from './stampede.ts';
import { benchProcessStampede } from './stampede-processes.ts';
import { benchTakeover } from './takeover.ts';
import { benchWarmToken } from './warm-token.ts';

const { values: args } = parseArgs({
  options: {
    only: {
      type: 'string',
      default:
        'warm,warm-xray,stampede,stampede-processes,refresher,cold,first-use,takeover,session-claim',
    },
    fetches: { type: 'string', default: '2000' },
    warmup: { type: 'string', default: '300' },
    stampede: { type: 'string', default: '200' },
    containers: { type: 'string', default: '4' },
    /** stampede-processes: expiries measured. */
    rounds: { type: 'string', default: '25' },
    'provider-ms': { type: 'string', default: '50' },
    connections: { type: 'string', default: '10000' },
    concurrency: { type: 'string', default: '10' },
    runs: { type: 'string', default: '21' },
    'first-use-callers': { type: 'string', default: '24' },
    crashes: { type: 'string', default: '3' },
    opens: { type: 'string', default: '100' },
    out: { type: 'string', default: 'bench/results.json' },
    verbose: { type: 'boolean', default: false },
    /** Internal (warm-xray): the X-Ray SDK's context hook on, as in a traced deployment. */
    'xray-hook': { type: 'boolean', default: false },
  },
});

// Importing the X-Ray SDK creates its cls-hooked namespace: an async hook with a destroy callback
// on every promise from then on, which a traced Lambda (the deployed default) pays on every call.
if (args['xray-hook']) await import('aws-xray-sdk-core');

const int = (name: keyof typeof args): number => {
  const value = Number(args[name]);
  if (!Number.isInteger(value) || value < 1)
    throw new Error(`--${name} must be a positive integer`);
  return value;
};

const provider = 'quiqup';
const configInput = { providers: { [provider]: { catalog: 'quiqup', environment: 'sandbox' } } };
const config = parseConfig(configInput);
const options = {
  fetches: int('fetches'),
  warmup: int('warmup'),
  stampede: int('stampede'),
  containers: int('containers'),
  rounds: int('rounds'),
  providerDelayMs: int('provider-ms'),
  connections: int('connections'),
  concurrency: int('concurrency'),
  runs: int('runs'),
  firstUseCallers: int('first-use-callers'),
  crashes: int('crashes'),
  opens: int('opens'),
};

const workloads: Record<string, { title: string; run: () => Promise<WorkloadResult> }> = {
  warm: {
    title: `warm token fetch: ${options.fetches} fetches interleaved with GetItem`,
    run: () =>
      benchWarmToken({ config, provider, fetches: options.fetches, warmup: options.warmup }),
  },
  'warm-xray': {
    title: `warm token fetch again, in a process with the X-Ray SDK's context hook on (tracing's cost)`,
    run: () => warmWithXrayHook(),
  },
  stampede: {
    title: `stampede: ${options.stampede} fetches of one expired token over ${options.containers} containers`,
    run: () =>
      benchStampede({
        config,
        provider,
        fetches: options.stampede,
        containers: options.containers,
        providerDelayMs: options.providerDelayMs,
        baselineCalls: 20,
      }),
  },
  'stampede-processes': {
    title: `stampede across ${options.containers} container processes, one caller each, ${options.rounds} expiries`,
    run: () =>
      benchProcessStampede({
        config,
        configInput,
        provider,
        containers: options.containers,
        rounds: options.rounds,
        providerDelayMs: options.providerDelayMs,
        baselineCalls: 20,
      }),
  },
  refresher: {
    title: `refresher: ${options.connections} due connections, C=${options.concurrency}`,
    run: () =>
      benchRefresher({
        config,
        configInput,
        provider,
        connections: options.connections,
        concurrency: options.concurrency,
        providerDelayMs: options.providerDelayMs,
      }),
  },
  'first-use': {
    title: `first use: ${options.firstUseCallers} callers over ${options.containers} containers, no connection yet`,
    run: () =>
      benchFirstUse({
        config,
        provider,
        callers: options.firstUseCallers,
        containers: options.containers,
        providerDelayMs: options.providerDelayMs,
      }),
  },
  takeover: {
    title: `crash takeover: ${options.crashes} holders killed mid-call in a process of their own`,
    run: () => benchTakeover({ config, configInput, provider, crashes: options.crashes }),
  },
  'session-claim': {
    title: `session claim: ${options.opens} parallel opens of one connect link`,
    run: () =>
      benchSessionClaim({
        config: parseConfig({
          allowedReturnTo: ['http://app.test/'],
          providers: { quipt: { catalog: 'quipt', environment: 'sandbox' } },
        }),
        returnTo: 'http://app.test/done',
        opens: options.opens,
      }),
  },
  cold: {
    title: `cold start: bundles and ${options.runs} fresh imports each`,
    run: () => benchColdStart({ runs: options.runs }),
  },
};

const selected = args.only.split(',').map((name) => name.trim());
for (const name of selected) {
  if (!workloads[name]) {
    throw new Error(`--only: unknown workload "${name}" (${Object.keys(workloads).join(', ')})`);
  }
}

const machine = {
  date: new Date().toISOString(),
  node: process.version,
  os: `${osType()} ${release()}`,
  cpu: cpus()[0]?.model.trim() ?? 'unknown',
  cores: cpus().length,
  memoryGb: Math.round(totalmem() / 2 ** 30),
  /** 1-minute load average before and after: other work on the machine skews every figure. */
  loadBefore: loadavg()[0]!,
  loadAfter: 0,
};
console.log(
  `npm run bench — ${machine.date}, Node ${machine.node}, ${machine.cores} × ${machine.cpu}, ${machine.os}, load ${machine.loadBefore.toFixed(2)}\n`,
);

const rows: BenchRow[] = [];
const results: Record<string, unknown> = {};
const notes: string[] = [];
let crashed = false;
for (const name of selected) {
  const workload = workloads[name]!;
  console.log(`… ${workload.title}`);
  const started = performance.now();
  try {
    const result = await workload.run();
    rows.push(...result.rows);
    results[name] = { ...result.details, elapsedMs: performance.now() - started };
    notes.push(...result.notes);
  } catch (error) {
    crashed = true;
    console.error(`${name} failed:`, error);
    results[name] = { error: String(error) };
  }
}

machine.loadAfter = loadavg()[0]!;
console.log('\n' + table(rows));
for (const note of notes) console.log(`\n${note}`);
const met = rows.filter((row) => row.met === true).length;
const missed = rows.filter((row) => row.met === false);
console.log(
  `\ngoals: ${met} met, ${missed.length} missed${missed.length ? ` (${missed.map((r) => `${r.workload}: ${r.metric}`).join('; ')})` : ''}`,
);

writeFileSync(
  args.out,
  JSON.stringify({ machine, options, rows, results, notes }, null, 2) + '\n',
  'utf8',
);
console.log(
  `load average (1 min): ${machine.loadBefore.toFixed(2)} before, ${machine.loadAfter.toFixed(2)} after`,
);
console.log(`written: ${args.out}`);
if (crashed) process.exitCode = 1;

/**
 * The warm workload in a process of its own with the X-Ray SDK loaded (its hook cannot be turned
 * off again, so it must not reach the other workloads), its rows relabelled. It shows what a
 * traced function pays per call for the hook; the trace segments themselves are not included.
 */
async function warmWithXrayHook(): Promise<WorkloadResult> {
  const dir = mkdtempSync(join(tmpdir(), 'bench-warm-xray-'));
  try {
    const out = join(dir, 'results.json');
    const child = spawnSync(
      process.execPath,
      [
        ...process.execArgv,
        fileURLToPath(import.meta.url),
        '--only=warm',
        '--xray-hook',
        `--fetches=${options.fetches}`,
        `--warmup=${options.warmup}`,
        `--out=${out}`,
      ],
      { encoding: 'utf8' },
    );
    if (child.status !== 0) throw new Error(`the warm-xray process failed: ${child.stderr}`);
    const result = JSON.parse(readFileSync(out, 'utf8')) as {
      rows: BenchRow[];
      results: { warm: Record<string, unknown> };
    };
    return {
      rows: result.rows
        .filter(
          (row) => !row.metric.startsWith('key-manager') && !row.metric.startsWith('decrypts'),
        )
        .map((row) => ({ ...row, workload: '1b warm, X-Ray hook on' })),
      details: result.results.warm,
      notes: [],
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** A Markdown table, so a run can be pasted into the README as it is. */
function table(list: BenchRow[]): string {
  const header = ['workload', 'metric', 'measured', 'goal', 'met'];
  const cells = list.map((row) => [
    row.workload,
    row.metric,
    row.measured,
    row.goal,
    row.met === undefined ? '' : row.met ? 'yes' : 'NO',
  ]);
  const widths = header.map((title, i) =>
    Math.max(title.length, ...cells.map((line) => line[i]!.length)),
  );
  const line = (values: string[]) =>
    `| ${values.map((value, i) => value.padEnd(widths[i]!)).join(' | ')} |`;
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...cells.map(line)].join('\n');
}
