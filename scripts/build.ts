/**
 * `npm run build` (and `prepack`): the npm package in dist/.
 * - dist/client/index.js: `oauth-token-broker`, the TokenBrokerClient (plain Node ESM).
 * - dist/cdk/index.js: `oauth-token-broker/cdk`, the TokenBroker construct. aws-cdk-lib,
 *   constructs and cdk-nag are the consumer's; everything else it needs at synth is bundled in.
 * - dist/lambda/<name>/index.mjs (and its chunks/): each function's handler, bundled as the stack
 *   deploys it, which the construct ships (with the consumer's configuration) instead of building
 *   from source.
 * - dist/types/: the declarations of both entry points.
 */
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { build, type BuildOptions } from 'esbuild';
import { handlerBuildOptions } from '../infra/broker-function.ts';
import { brokerFunctionNames, brokerFunctions } from '../infra/functions.ts';

const dist = resolve('dist');
rmSync(dist, { recursive: true, force: true });

const library: BuildOptions = {
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  // CommonJS dependencies bundled into an ES module still call `require` (the construct's own
  // code imports createRequire too, hence the alias).
  banner: {
    js: "import { createRequire as __createRequire } from 'module'; const require = __createRequire(import.meta.url);",
  },
  logLevel: 'warning',
};

await Promise.all([
  ...brokerFunctionNames.map((name) =>
    build(
      handlerBuildOptions(
        resolve(brokerFunctions[name].entry),
        resolve(dist, 'lambda', name, 'index.mjs'),
      ),
    ),
  ),
  build({
    ...library,
    entryPoints: ['infra/cdk.ts'],
    outfile: resolve(dist, 'cdk/index.js'),
    external: ['aws-cdk-lib', 'aws-cdk-lib/*', 'constructs', 'cdk-nag', 'esbuild'],
  }),
  build({
    ...library,
    entryPoints: ['shared/client/index.ts'],
    outfile: resolve(dist, 'client/index.js'),
    external: ['@aws-sdk/client-lambda'],
  }),
]);

execFileSync(
  process.execPath,
  [resolve('node_modules/typescript/bin/tsc'), '-p', 'tsconfig.build.json'],
  { stdio: 'inherit' },
);
// The sources import `./x.ts` (run by tsx, type-checked with allowImportingTsExtensions); the
// published declarations sit beside `.js` files, so their imports say `.js`.
for (const file of readdirSync(join(dist, 'types'), { recursive: true, encoding: 'utf8' })) {
  if (!file.endsWith('.d.ts')) continue;
  const path = join(dist, 'types', file);
  writeFileSync(path, readFileSync(path, 'utf8').replace(/(from '\.{1,2}\/[^']+)\.ts'/g, "$1.js'"));
}
// Quiet on stdout: `npm pack --json` prints its report there after this runs (prepack).
console.error(`built ${dist}`);
