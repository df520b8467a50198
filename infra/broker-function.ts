import { createHash } from 'node:crypto';
import { cpSync, existsSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, parse } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DockerImage, Duration, RemovalPolicy, type ILocalBundling } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { OutputFormat } from 'aws-cdk-lib/aws-lambda-nodejs';
import * as logs from 'aws-cdk-lib/aws-logs';
import type { Construct } from 'constructs';
import type { BuildOptions } from 'esbuild';
import { brokerFunctions } from './functions.ts';
import type { BrokerFunctionName } from './function-names.ts';

/** ESM bundles have no `require`; some CommonJS dependencies still call it. */
export const esmRequireBanner =
  "import { createRequire } from 'module'; const require = createRequire(import.meta.url);";

/**
 * How every broker function is bundled, in one place so scripts/measure-bundle.ts measures
 * exactly what the stack deploys (and `npm run build` ships in the package).
 *
 * The AWS SDK is bundled (`externalModules: []`), decided by measurement (docs/deployment.md,
 * "Bundle size"; scripts/measure-bundle.ts): for functions/token.ts it grows what Node loads at
 * import from 147 KB to 429 KB minified (48 → 132 KB gzipped), yet Node imports the bundled
 * handler faster (134 ms vs 187 ms with the SDK loaded from node_modules, traced), and it pins the
 * SDK to the version the tests ran against instead of whatever the runtime ships.
 */
export const brokerBundling = {
  format: OutputFormat.ESM,
  // Prefer the ESM builds of dependencies (the SDK ships both); they tree-shake better.
  mainFields: ['module', 'main'],
  banner: esmRequireBanner,
  minify: true,
  sourceMap: true,
  // The maps serve stack traces (--enable-source-maps), which need mappings, not the sources.
  sourcesContent: false,
  externalModules: [],
} as const;

/**
 * Pinned rather than "latest": a runtime upgrade is a deliberate, tested change. The tests run on
 * the same major (the `node` dev dependency; test/infra/runtime.test.ts checks it).
 */
export const brokerRuntime = lambda.Runtime.NODEJS_24_X;

/** The file in each function's asset that holds the validated configuration (shared/config.ts). */
export const configFileName = 'broker.config.json';

/**
 * Dependencies of dependencies that no broker code path reaches, replaced in the bundles by a
 * module that throws if it ever is: each is bytes Node parses, and work it does, at every cold
 * start (the `cold start` bench workload). test/bundle-tracing.test.ts runs the token bundle traced.
 */
export const bundleAliases = {
  semver: fileURLToPath(new URL('./bundling/semver-unbundled.ts', import.meta.url)),
} as const;

/**
 * esbuild's options for one handler: `entry` (a .ts file) into `outfile` (…/index.mjs), and the
 * code it imports dynamically into `chunks/` beside it. With code splitting a dynamic `import()`
 * is a file of its own that Node reads, compiles and runs only when the import runs (the Tracer
 * and the X-Ray SDK where they trace, a refusal's request schema and TypeBox, the AWS SDK's
 * credential providers at the first call); without it, esbuild inlines that code into the one file,
 * and Node compiles it at every cold start. Code both sides import goes into a shared chunk,
 * which the handler's file imports statically.
 */
export function handlerBuildOptions(entry: string, outfile: string): BuildOptions {
  const { dir, name, ext } = parse(outfile);
  return {
    entryPoints: [entry],
    outdir: dir,
    entryNames: name,
    chunkNames: 'chunks/[name]-[hash]',
    outExtension: { '.js': ext },
    splitting: true,
    bundle: true,
    platform: 'node',
    target: brokerRuntime.name.replace(/^nodejs(\d+)\.x$/, 'node$1'),
    format: 'esm',
    mainFields: [...brokerBundling.mainFields],
    banner: { js: brokerBundling.banner },
    minify: brokerBundling.minify,
    sourcemap: brokerBundling.sourceMap,
    sourcesContent: brokerBundling.sourcesContent,
    external: [...brokerBundling.externalModules],
    alias: { ...bundleAliases },
    logLevel: 'warning',
  };
}

/**
 * A function's code: its handler bundle plus the configuration file, as one asset. From the npm
 * package the bundle is the one `npm run build` made (`lambda/<name>/` beside the construct's
 * module), so a consumer needs neither this source tree nor esbuild; in this repository it is
 * built from source with esbuild at synth. The configuration travels in the asset, not in an
 * environment variable, so its size is bounded by Lambda's code size only.
 */
export function brokerFunctionCode(name: BrokerFunctionName, configJson: string): lambda.Code {
  const bundler = new FunctionAssetBundler(name, configJson);
  return lambda.Code.fromAsset(bundler.sourceDir, {
    bundling: {
      // Never pulled: local bundling always succeeds or throws.
      image: DockerImage.fromRegistry('public.ecr.aws/docker/library/node:24'),
      local: bundler,
    },
  });
}

/**
 * Bundles one function's asset on this machine. Its fields (not its methods) are part of the
 * CDK's per-synth asset cache key, so two configurations never share a staged asset.
 */
class FunctionAssetBundler implements ILocalBundling {
  readonly sourceDir: string;
  readonly fromPackage: boolean;
  readonly configSha256: string;
  private readonly entry: string;

  constructor(
    readonly name: BrokerFunctionName,
    private readonly configJson: string,
  ) {
    const prebuilt = fileURLToPath(new URL(`../lambda/${name}/`, import.meta.url));
    this.fromPackage = existsSync(join(prebuilt, 'index.mjs'));
    this.entry = fileURLToPath(new URL(`../${brokerFunctions[name].entry}`, import.meta.url));
    this.sourceDir = this.fromPackage ? prebuilt : dirname(this.entry);
    this.configSha256 = createHash('sha256').update(configJson).digest('hex');
  }

  tryBundle(outputDir: string): boolean {
    if (this.fromPackage) {
      cpSync(this.sourceDir, outputDir, { recursive: true });
    } else {
      // A dev dependency of this repository only: required here, never by the package.
      const esbuild = createRequire(import.meta.url)('esbuild') as typeof import('esbuild');
      esbuild.buildSync(handlerBuildOptions(this.entry, join(outputDir, 'index.mjs')));
    }
    writeFileSync(join(outputDir, configFileName), this.configJson);
    return true;
  }
}

export interface BrokerFunctionProps extends Omit<
  lambda.FunctionProps,
  'runtime' | 'architecture' | 'logGroup' | 'logRetention' | 'role' | 'code' | 'handler'
> {
  /** Which of the catalog's functions (infra/functions.ts). */
  name: BrokerFunctionName;
  /** The validated configuration as JSON, shipped in the asset. */
  configJson: string;
  /** Default: one month. */
  logRetention?: logs.RetentionDays;
  /** What happens to the log group when the stack lets go of it. Default: retain. */
  logRemovalPolicy?: RemovalPolicy;
}

/**
 * A broker Lambda with the house defaults: Node.js 24 on ARM64, minified ESM with source maps,
 * its own log group with a retention, and its own role that can write only to that log group
 * (no AWSLambdaBasicExecutionRole, whose CreateLogGroup on `*` this function does not need).
 * Callers add the function's data permissions with explicit statements.
 */
export class BrokerFunction extends lambda.Function {
  constructor(scope: Construct, id: string, props: BrokerFunctionProps) {
    const { name, configJson, logRetention, logRemovalPolicy, environment, ...rest } = props;
    const logGroup = new logs.LogGroup(scope, `${id}Logs`, {
      retention: logRetention ?? logs.RetentionDays.ONE_MONTH,
      removalPolicy: logRemovalPolicy ?? RemovalPolicy.RETAIN,
    });
    const role = new iam.Role(scope, `${id}Role`, {
      assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
      description: `Execution role of the ${id} function`,
    });
    logGroup.grantWrite(role);

    super(scope, id, {
      memorySize: 256,
      timeout: Duration.seconds(30),
      ...rest,
      runtime: brokerRuntime,
      architecture: lambda.Architecture.ARM_64,
      code: brokerFunctionCode(name, configJson),
      handler: 'index.handler',
      logGroup,
      role,
      environment: { NODE_OPTIONS: '--enable-source-maps', ...environment },
    });
  }
}
