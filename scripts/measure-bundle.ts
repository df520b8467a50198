/**
 * `npx tsx scripts/measure-bundle.ts [entry]`: bundles a function (default functions/token.ts)
 * with the stack's esbuild settings (infra/broker-function.ts brokerBundling), once with the AWS
 * SDK bundled and once with it left to the Lambda runtime, and prints the sizes and how long
 * Node takes to import each bundle. docs/deployment.md records the numbers and the decision.
 *
 * A bundle is the handler's file and the chunks it imports statically (what Node loads at every
 * cold start: "at import"); the chunks only a dynamic import loads are counted apart ("on
 * demand").
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
  /** The output files Node loads when it imports `outfile` (itself first). */
  filesAtImport: string[];
  /** Their bytes, gzipped (each file), their source maps', and what of them is the AWS SDK. */
  bundleBytes: number;
  gzipBytes: number;
  mapBytes: number;
  sdkBytes: number;
  /** The other chunks: loaded only when a dynamic import runs. */
  onDemandBytes: number;
  metafile: Metafile;
}

interface Measurement extends BundleMeasurement {
  name: string;
  importMs: number;
}

/**
 * Bundles `entry` into `outdir/index.mjs` exactly as the stack does, and measures the output.
 * `splitting: false` builds the one file the stack built before it split bundles (the cold-start
 * bench's comparison).
 */
export async function bundleWithStackSettings(
  entry: string,
  outdir: string,
  externalModules: string[] = [...brokerBundling.externalModules],
  { splitting = true }: { splitting?: boolean } = {},
): Promise<BundleMeasurement> {
  rmSync(outdir, { recursive: true, force: true });
  mkdirSync(outdir, { recursive: true });
  const outfile = join(outdir, 'index.mjs');
  // The options the stack builds each function with (infra/broker-function.ts).
  const { metafile } = await build({
    ...handlerBuildOptions(entry, outfile),
    external: externalModules,
    splitting,
    metafile: true,
  });
  const filesAtImport = outputsAtImport(metafile, outfile);
  const code = (files: string[]) => files.map((file) => readFileSync(file));
  const sum = (values: number[]) => values.reduce((total, value) => total + value, 0);
  const allCode = Object.keys(metafile.outputs)
    .map((path) => resolve(path))
    .filter((path) => !path.endsWith('.map'));
  return {
    outfile,
    filesAtImport,
    bundleBytes: sum(code(filesAtImport).map((bytes) => bytes.length)),
    gzipBytes: sum(code(filesAtImport).map((bytes) => gzipSync(bytes, { level: 9 }).length)),
    mapBytes: sum(filesAtImport.map((file) => statSync(`${file}.map`).size)),
    sdkBytes: sdkBytesIn(metafile, filesAtImport),
    onDemandBytes: sum(
      allCode.filter((file) => !filesAtImport.includes(file)).map((file) => statSync(file).size),
    ),
    metafile,
  };
}

/**
 * The output files Node loads when it imports `outfile`: itself and, transitively, the chunks it
 * imports statically (absolute paths). Chunks reached only through a dynamic `import()` are not.
 */
export function outputsAtImport(metafile: Metafile, outfile: string): string[] {
  const outputs = new Map(
    Object.entries(metafile.outputs).map(([path, output]) => [resolve(path), output]),
  );
  const loaded: string[] = [];
  const visit = (file: string) => {
    const output = outputs.get(file);
    if (!output || loaded.includes(file)) return;
    loaded.push(file);
    for (const imported of output.imports) {
      if (imported.kind === 'import-statement') visit(resolve(imported.path));
    }
  };
  visit(resolve(outfile));
  return loaded;
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

/** The bytes of `files` (output paths) that come from each input, by the input's path. */
export function inputBytesIn(metafile: Metafile, files: string[]): Map<string, number> {
  const bytes = new Map<string, number>();
  for (const [path, output] of Object.entries(metafile.outputs)) {
    if (!files.includes(resolve(path))) continue;
    for (const [input, { bytesInOutput }] of Object.entries(output.inputs)) {
      bytes.set(input, (bytes.get(input) ?? 0) + bytesInOutput);
    }
  }
  return bytes;
}

/** Bytes of the output that come from @aws-sdk/* and @smithy/* sources. */
function sdkBytesIn(metafile: Metafile, files: string[]): number {
  return [...inputBytesIn(metafile, files)]
    .filter(([path]) => /node_modules\/@(aws-sdk|smithy)\//.test(path))
    .reduce((sum, [, bytes]) => sum + bytes, 0);
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
      'at import'.padStart(11),
      'files'.padStart(6),
      'gzip'.padStart(10),
      '.map'.padStart(11),
      'of it SDK'.padStart(11),
      'on demand'.padStart(11),
      'import'.padStart(9),
    ].join(' '),
  );
  for (const r of results) {
    console.log(
      [
        r.name.padEnd(24),
        kb(r.bundleBytes).padStart(11),
        String(r.filesAtImport.length).padStart(6),
        kb(r.gzipBytes).padStart(10),
        kb(r.mapBytes).padStart(11),
        kb(r.sdkBytes).padStart(11),
        kb(r.onDemandBytes).padStart(11),
        `${r.importMs.toFixed(0)} ms`.padStart(9),
      ].join(' '),
    );
  }
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) await main();
