import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import {
  NodejsFunction,
  OutputFormat,
  type BundlingOptions,
  type NodejsFunctionProps,
} from 'aws-cdk-lib/aws-lambda-nodejs';
import * as logs from 'aws-cdk-lib/aws-logs';
import type { Construct } from 'constructs';

/** ESM bundles have no `require`; some CommonJS dependencies still call it. */
export const esmRequireBanner =
  "import { createRequire } from 'module'; const require = createRequire(import.meta.url);";

/**
 * How every broker function is bundled, in one place so scripts/measure-bundle.ts measures
 * exactly what the stack deploys.
 *
 * The AWS SDK is bundled (`externalModules: []`), decided by measurement (docs/deployment.md,
 * "Bundle size"; scripts/measure-bundle.ts): for functions/token.ts it grows the bundle from 178 KB
 * to 554 KB minified (50 → 158 KB gzipped), yet Node imports the bundled handler in about half the
 * time (70–95 ms vs 150–190 ms with the SDK loaded from node_modules), and it pins the SDK to the
 * version the tests ran against instead of whatever the runtime ships.
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
  // Build with the local esbuild (a dev dependency); Docker is never needed to synthesize.
  forceDockerBundling: false,
} as const satisfies BundlingOptions;

/**
 * Pinned rather than "latest": a runtime upgrade is a deliberate, tested change. The tests run on
 * the same major (the `node` dev dependency; test/infra/runtime.test.ts checks it).
 */
export const brokerRuntime = lambda.Runtime.NODEJS_24_X;

export interface BrokerFunctionProps extends Omit<
  NodejsFunctionProps,
  'runtime' | 'architecture' | 'logGroup' | 'logRetention' | 'role'
> {
  /** The handler module, e.g. functions/token.ts. */
  entry: string;
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
export class BrokerFunction extends NodejsFunction {
  constructor(scope: Construct, id: string, props: BrokerFunctionProps) {
    const { logRetention, logRemovalPolicy, bundling, environment, ...rest } = props;
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
      logGroup,
      role,
      bundling: { ...brokerBundling, ...bundling },
      environment: { NODE_OPTIONS: '--enable-source-maps', ...environment },
    });
  }
}
