/**
 * Workload 4, cold start: every function's bundle, built with the stack's esbuild settings
 * (scripts/measure-bundle.ts, which reads infra/broker-function.ts), and the time a fresh `node`
 * takes to import the `token` bundle against a hello-world bundle importing only the same SDK
 * clients (bench/hello-world.ts). The two are imported alternately, so drift hits both alike, each
 * in the environment Lambda gives a traced function's init (`lambdaEnvironment`): the X-Ray SDK
 * loads only where the Tracer traces, and a deployed cold start does trace (the stack's default).
 */
import { readdirSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import {
  bundleWithStackSettings,
  importMs,
  inputBytesIn,
  type BundleMeasurement,
} from '../scripts/measure-bundle.ts';
import { kb, median, ms, times, type BenchRow, type WorkloadResult } from './harness.ts';

export interface ColdStartOptions {
  /** Fresh processes per bundle. */
  runs: number;
}

const outRoot = resolve('node_modules/.cache/bench-cold-start');
const TOKEN_BUNDLE_GOAL_BYTES = 250 * 1024;

export async function benchColdStart(options: ColdStartOptions): Promise<WorkloadResult> {
  const entries = readdirSync('functions')
    .filter((file) => file.endsWith('.ts'))
    .sort()
    .map((file) => resolve('functions', file));
  const bundles = new Map<string, Awaited<ReturnType<typeof bundleWithStackSettings>>>();
  for (const entry of entries) {
    const name = basename(entry, '.ts');
    bundles.set(name, await bundleWithStackSettings(entry, join(outRoot, name)));
  }
  const hello = await bundleWithStackSettings(
    resolve('bench/hello-world.ts'),
    join(outRoot, 'hello-world'),
  );
  const token = bundles.get('token');
  if (!token) throw new Error('functions/token.ts not found');
  // The same two as one file each, as the stack built them before it split bundles: what the
  // split saves in absolute terms (the ratio's baseline gains from it too).
  const oneFile = { splitting: false };
  const tokenOneFile = await bundleWithStackSettings(
    resolve('functions/token.ts'),
    join(outRoot, 'token-one-file'),
    undefined,
    oneFile,
  );
  const helloOneFile = await bundleWithStackSettings(
    resolve('bench/hello-world.ts'),
    join(outRoot, 'hello-world-one-file'),
    undefined,
    oneFile,
  );

  const tokenMs: number[] = [];
  const untracedMs: number[] = [];
  const helloMs: number[] = [];
  const tokenOneFileMs: number[] = [];
  const helloOneFileMs: number[] = [];
  // let the OS cache every file before timing
  for (const b of [hello, token, tokenOneFile, helloOneFile]) importMs(b.outfile);
  for (let i = 0; i < options.runs; i += 1) {
    const order: [string, number[], boolean][] = [
      [token.outfile, tokenMs, true],
      [hello.outfile, helloMs, true],
      [token.outfile, untracedMs, false], // a stack deployed with tracing: false
      [tokenOneFile.outfile, tokenOneFileMs, true],
      [helloOneFile.outfile, helloOneFileMs, true],
    ];
    if (i % 2 === 1) order.reverse();
    for (const [outfile, into, tracing] of order) into.push(importMs(outfile, tracing));
  }

  const workload = '4 cold start';
  const rows: BenchRow[] = [...bundles].map(([name, bundle]) => ({
    workload,
    metric: `${name} bundle at import, minified (gzip; SDK share; on demand)`,
    measured: `${kb(bundle.bundleBytes)} (${kb(bundle.gzipBytes)}; ${kb(bundle.sdkBytes)}; ${kb(bundle.onDemandBytes)})`,
    goal: name === 'token' ? '≤ 250 KB' : '',
    ...(name === 'token' ? { met: bundle.bundleBytes <= TOKEN_BUNDLE_GOAL_BYTES } : {}),
  }));
  rows.push({
    workload,
    metric: 'hello-world bundle at import (same SDK clients)',
    measured: `${kb(hello.bundleBytes)} (${kb(hello.gzipBytes)}; ${kb(hello.sdkBytes)}; ${kb(hello.onDemandBytes)})`,
    goal: '',
  });
  const ratio = median(tokenMs) / median(helloMs);
  rows.push(
    {
      workload,
      metric: `import, median of ${options.runs}: token / hello-world`,
      measured: `${ms(median(tokenMs))} / ${ms(median(helloMs))}`,
      goal: '',
    },
    {
      workload,
      metric: 'import ratio token / hello-world',
      measured: times(ratio),
      goal: '≤ 1.20×',
      met: ratio <= 1.2,
    },
    {
      workload,
      // Context for the goal: what the Tracer and the X-Ray SDK add to a traced cold start.
      metric: 'import ratio, a stack with tracing: false',
      measured: `${times(median(untracedMs) / median(helloMs))} (${ms(median(untracedMs))})`,
      goal: '',
    },
    {
      workload,
      metric: 'import, one-file builds (no code splitting): token / hello-world',
      measured: `${ms(median(tokenOneFileMs))} / ${ms(median(helloOneFileMs))} (${times(median(tokenOneFileMs) / median(helloOneFileMs))})`,
      goal: '',
    },
  );

  const tokenPackages = bytesByPackage(token);
  return {
    rows,
    details: {
      runs: options.runs,
      bundles: Object.fromEntries(
        [...bundles, ['hello-world', hello] as const].map(([name, b]) => [
          name,
          {
            bytes: b.bundleBytes,
            gzipBytes: b.gzipBytes,
            sdkBytes: b.sdkBytes,
            onDemandBytes: b.onDemandBytes,
          },
        ]),
      ),
      importMs: {
        token: { median: median(tokenMs), samples: tokenMs },
        helloWorld: { median: median(helloMs), samples: helloMs },
        ratio,
        tracingOff: { median: median(untracedMs), samples: untracedMs },
        tracingOffRatio: median(untracedMs) / median(helloMs),
        oneFile: {
          token: { median: median(tokenOneFileMs), bytes: tokenOneFile.bundleBytes },
          helloWorld: { median: median(helloOneFileMs), bytes: helloOneFile.bundleBytes },
        },
      },
      tokenBundleByPackage: tokenPackages,
    },
    notes: [
      `token bundle, largest parts: ${Object.entries(tokenPackages)
        .slice(0, 8)
        .map(([name, bytes]) => `${name} ${kb(bytes)}`)
        .join(', ')}`,
    ],
  };
}

/** Bytes loaded at import per npm package (or "(project)"), largest first. */
function bytesByPackage(bundle: BundleMeasurement): Record<string, number> {
  const sums = new Map<string, number>();
  for (const [path, bytes] of inputBytesIn(bundle.metafile, bundle.filesAtImport)) {
    // The innermost node_modules names the package (the SDK nests some of its own).
    const inner = path.split('node_modules/').slice(1).at(-1);
    const name = inner ? /^(?:@[^/]+\/)?[^/]+/.exec(inner)![0] : '(project)';
    sums.set(name, (sums.get(name) ?? 0) + bytes);
  }
  return Object.fromEntries([...sums].sort((a, b) => b[1] - a[1]));
}
