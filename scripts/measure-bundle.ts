/**
 * `npx tsx scripts/measure-bundle.ts [entry]`: bundles a function (default functions/token.ts)
 * with the stack's esbuild settings (infra/broker-function.ts brokerBundling), once with the AWS
 * SDK bundled and once with it left to the Lambda runtime, and prints the sizes and how long
 * Node takes to import each bundle. docs/deployment.md records the numbers and the decision.
 *
 * The import time of the external variant loads the SDK from this repo's node_modules, standing in
 * for the runtime's copy under /var/runtime/node_modules: same packages, same unbundled layout.
 *
 * `bundleWithStackSettings` and `importMs` are also what `npm run bench` (bench/cold-start.ts) uses.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { gzipSync } from 'node:zlib';
import { build, type Metafile } from 'esbuild';
import { brokerBundling, brokerRuntime, handlerBuildOptions } from '../infra/broker-function.ts';

// Inside the project so the external variant resolves @aws-sdk/* from node_modules.
const outRoot = resolve('node_modules/.cache/measure-bundle');

const variants = [
  { name: 'SDK bundled', externalModules: [] as string[] },
  // What NodejsFunction leaves out by default on nodejs18.x and later (with the smithy flag on).
  { name: 'SDK external (runtime)', externalModules: ['@aws-sdk/*', '@smithy/*'] },
];

export interface BundleMeasurement {
  outfile: string;
  bundleBytes: number;
  gzipBytes: number;
  mapBytes: number;
  sdkBytes: number;
  metafile: Metafile;
}

interface Measurement extends BundleMeasurement {
  name: string;
  importMs: number;
}

/** Bundles `entry` into `outdir/index.mjs` exactly as the stack does, and measures the output. */
export async function bundleWithStackSettings(
  entry: string,
  outdir: string,
  externalModules: string[] = [...brokerBundling.externalModules],
): Promise<BundleMeasurement> {
  rmSync(outdir, { recursive: true, force: true });
  mkdirSync(outdir, { recursive: true });
  const outfile = join(outdir, 'index.mjs');
  // The options the stack builds each function with (infra/broker-function.ts).
  const result = await build({
    ...handlerBuildOptions(entry, outfile),
    external: externalModules,
    metafile: true,
  });
  const bundle = readFileSync(outfile);
  return {
    outfile,
    bundleBytes: bundle.length,
    gzipBytes: gzipSync(bundle, { level: 9 }).length,
    mapBytes: statSync(`${outfile}.map`).size,
    sdkBytes: sdkBytesIn(result.metafile, outfile),
    metafile: result.metafile,
  };
}

async function measure(
  entry: string,
  variant: (typeof variants)[number],
  runs: number,
): Promise<Measurement> {
  const outdir = join(outRoot, variant.name.replace(/\W+/g, '-'));
  const bundle = await bundleWithStackSettings(entry, outdir, variant.externalModules);
  return { ...bundle, name: variant.name, importMs: medianImportMs(bundle.outfile, runs) };
}

/** Bytes of the output that come from @aws-sdk/* and @smithy/* sources. */
function sdkBytesIn(metafile: Metafile, outfile: string): number {
  const output = Object.entries(metafile.outputs).find(([path]) => resolve(path) === outfile)?.[1];
  if (!output) return 0;
  return Object.entries(output.inputs)
    .filter(([path]) => /node_modules\/@(aws-sdk|smithy)\//.test(path))
    .reduce((sum, [, input]) => sum + input.bytesInOutput, 0);
}

/**
 * The environment Lambda gives the init of a function of the stack (X-Ray tracing on, its
 * default). The Tracer and the X-Ray SDK load only where they trace (shared/observability.ts), so
 * an import timed without it would leave out work every deployed cold start does.
 */
export function lambdaEnvironment(outfile: string, tracing = true): NodeJS.ProcessEnv {
  return {
    PATH: process.env.PATH,
    AWS_EXECUTION_ENV: `AWS_Lambda_${brokerRuntime.name}`,
    AWS_LAMBDA_FUNCTION_NAME: 'cold-start',
    AWS_LAMBDA_INITIALIZATION_TYPE: 'on-demand',
    AWS_REGION: 'us-east-1',
    LAMBDA_TASK_ROOT: dirname(outfile),
    _HANDLER: 'index.handler',
    POWERTOOLS_SERVICE_NAME: 'oauth-token-broker',
    POWERTOOLS_TRACE_ENABLED: String(tracing),
  };
}

/**
 * How long a fresh `node --enable-source-maps` (as deployed) takes to import the bundle (ms), in
 * Lambda's environment (`lambdaEnvironment`; `tracing: false` as the construct's prop sets it).
 */
export function importMs(outfile: string, tracing = true): number {
  const script = `const t = performance.now(); await import(${JSON.stringify(pathToFileURL(outfile).href)}); console.log(performance.now() - t);`;
  const out = execFileSync(
    process.execPath,
    ['--enable-source-maps', '--input-type=module', '-e', script],
    { encoding: 'utf8', env: lambdaEnvironment(outfile, tracing) },
  );
  return Number(out.trim());
}

/** Median of `runs` fresh-process import times. */
function medianImportMs(outfile: string, runs: number): number {
  const times = Array.from({ length: runs }, () => importMs(outfile)).sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)]!;
}

const kb = (bytes: number) => `${(bytes / 1024).toFixed(1)} KB`;

async function main(): Promise<void> {
  const entry = resolve(process.argv[2] ?? 'functions/token.ts');
  const runs = Number(process.env.MEASURE_RUNS ?? 7);
  const results: Measurement[] = [];
  for (const variant of variants) results.push(await measure(entry, variant, runs));

  console.log(
    `${entry}: esbuild ${brokerBundling.format}, minify, sourcemap (no sources), target from ${brokerRuntime.name}`,
  );
  console.log(`Node ${process.version}, import time = median of ${runs} fresh processes\n`);
  console.log(
    [
      'variant'.padEnd(24),
      'index.mjs'.padStart(11),
      'gzip'.padStart(10),
      '.map'.padStart(11),
      'of it SDK'.padStart(11),
      'import'.padStart(9),
    ].join(' '),
  );
  for (const r of results) {
    console.log(
      [
        r.name.padEnd(24),
        kb(r.bundleBytes).padStart(11),
        kb(r.gzipBytes).padStart(10),
        kb(r.mapBytes).padStart(11),
        kb(r.sdkBytes).padStart(11),
        `${r.importMs.toFixed(0)} ms`.padStart(9),
      ].join(' '),
    );
  }
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) await main();
