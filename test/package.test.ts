import { execFile, execFileSync } from 'node:child_process';
import { promisify } from 'node:util';
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startLocalBroker, type LocalBroker } from '../infra/local/local-broker.ts';
import { parseConfig } from '../shared/config.ts';

// The package as a user gets it: `npm pack` (prepack runs `npm run build`), installed from the
// tarball in a fresh directory outside the clone, with aws-cdk-lib, constructs and the CDK CLI
// from the npm cache (the registry only if the cache lacks them). One pack for the whole file.
const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
const versionOf = (name: string) =>
  (
    JSON.parse(readFileSync(join(repo, 'node_modules', name, 'package.json'), 'utf8')) as {
      version: string;
    }
  ).version;

let work: string;
let consumer: string;
let tarball: string;

beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), 'broker-package-'));
  const report = execFileSync(npm, ['pack', '--json', '--pack-destination', work], {
    cwd: repo,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  // The report is the JSON array at the end (lifecycle scripts may print before it).
  const packed = JSON.parse(report.slice(report.lastIndexOf('\n[') + 1)) as {
    filename: string;
  }[];
  tarball = join(work, packed[0]!.filename);
  consumer = join(work, 'consumer');
  mkdirSync(consumer);
  execFileSync(npm, ['init', '-y'], { cwd: consumer, stdio: 'ignore' });
  execFileSync(
    npm,
    [
      'install',
      '--prefer-offline',
      '--no-audit',
      '--no-fund',
      tarball,
      `aws-cdk-lib@${versionOf('aws-cdk-lib')}`,
      `constructs@${versionOf('constructs')}`,
      `aws-cdk@${versionOf('aws-cdk')}`,
    ],
    { cwd: consumer, stdio: ['ignore', 'ignore', 'pipe'] },
  );
}, 600_000);

afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

describe('the npm package', () => {
  it('ships built JS, declarations and the function bundles, not the sources', () => {
    const installed = join(consumer, 'node_modules', 'oauth-token-broker');
    const manifest = JSON.parse(readFileSync(join(installed, 'package.json'), 'utf8')) as {
      exports: Record<string, { types: string; default: string }>;
      dependencies: Record<string, string>;
      peerDependencies: Record<string, string>;
    };
    for (const entry of Object.values(manifest.exports)) {
      expect(existsSync(join(installed, entry.default)), entry.default).toBe(true);
      expect(existsSync(join(installed, entry.types)), entry.types).toBe(true);
    }
    for (const name of ['token', 'connections', 'connect-start', 'connect-callback', 'refresher']) {
      expect(existsSync(join(installed, 'dist/lambda', name, 'index.mjs')), name).toBe(true);
    }
    expect(existsSync(join(installed, 'functions'))).toBe(false);
    expect(existsSync(join(installed, 'shared'))).toBe(false);

    // Every import of the published declarations resolves: to a shipped file, or to a package
    // the consumer has (a dependency or peer dependency of ours, or one of theirs).
    const known = new Set([
      ...Object.keys(manifest.dependencies),
      ...Object.keys(manifest.peerDependencies),
    ]);
    const seen = new Set<string>();
    const visit = (file: string) => {
      if (seen.has(file)) return;
      seen.add(file);
      const text = readFileSync(file, 'utf8');
      for (const [, specifier] of text.matchAll(/from '([^']+)'|import\('([^']+)'\)/g)) {
        if (!specifier) continue;
        if (specifier.startsWith('.')) {
          const target = resolve(dirname(file), specifier.replace(/\.js$/, '.d.ts'));
          expect(existsSync(target), `${relative(installed, file)} → ${specifier}`).toBe(true);
          visit(target);
        } else {
          const name = specifier.startsWith('@')
            ? specifier.split('/').slice(0, 2).join('/')
            : specifier.split('/')[0]!;
          expect(known.has(name) || name.startsWith('node:'), `${specifier}`).toBe(true);
        }
      }
    };
    for (const entry of Object.values(manifest.exports)) visit(join(installed, entry.types));
  });

  it(
    'synthesizes a consumer CDK app with `npx cdk synth`; its role may invoke the token function only',
    { timeout: 180_000 },
    () => {
      writeFileSync(
        join(consumer, 'broker.config.json'),
        JSON.stringify({
          allowedReturnTo: ['https://app.example.com/'],
          providers: {
            quiqup: { catalog: 'quiqup', environment: 'production' },
            acme: {
              kind: 'oauth2',
              authorizationUrl: 'https://login.acme.example/authorize',
              tokenUrl: 'https://login.acme.example/token',
            },
          },
        }),
      );
      copyFileSync(join(repo, 'test/package/consumer-app.mjs'), join(consumer, 'app.mjs'));
      execFileSync(
        npm,
        ['exec', '--', 'cdk', 'synth', '--app', 'node app.mjs', '--no-notices', '--quiet'],
        {
          cwd: consumer,
          stdio: ['ignore', 'ignore', 'pipe'],
          env: {
            ...process.env,
            AWS_EC2_METADATA_DISABLED: 'true',
            CDK_DISABLE_VERSION_CHECK: '1',
          },
        },
      );
      const template = JSON.parse(
        readFileSync(join(consumer, 'cdk.out', 'Platform.template.json'), 'utf8'),
      ) as { Resources: Record<string, { Type: string; Properties: Record<string, unknown> }> };
      const resources = Object.entries(template.Resources);
      const logicalId = (type: string, pattern: RegExp) =>
        resources.find(([id, r]) => r.Type === type && pattern.test(id))![0];
      const serviceRole = logicalId('AWS::IAM::Role', /^ServiceServiceRole/);
      const tokenFunction = logicalId('AWS::Lambda::Function', /^BrokerTokenFunction/);
      const statements = resources
        .filter(
          ([, r]) =>
            r.Type === 'AWS::IAM::Policy' &&
            JSON.stringify(r.Properties.Roles).includes(serviceRole),
        )
        .flatMap(([, r]) => (r.Properties.PolicyDocument as { Statement: unknown[] }).Statement);
      expect(statements).toEqual([
        {
          Action: 'lambda:InvokeFunction',
          Effect: 'Allow',
          Resource: [
            { 'Fn::GetAtt': [tokenFunction, 'Arn'] },
            { 'Fn::Join': ['', [{ 'Fn::GetAtt': [tokenFunction, 'Arn'] }, ':*']] },
          ],
        },
      ]);
      // The functions run the bundles the package shipped, each with the consumer's configuration.
      const broker = resources.filter(
        ([id, r]) => r.Type === 'AWS::Lambda::Function' && id.startsWith('Broker'),
      );
      expect(broker).toHaveLength(5);
      for (const [id, fn] of broker) {
        expect(fn.Properties.Runtime, id).toBe('nodejs24.x');
        const asset = (template.Resources[id] as unknown as { Metadata: Record<string, string> })
          .Metadata['aws:asset:path']!;
        const shipped = parseConfig(
          JSON.parse(readFileSync(join(consumer, 'cdk.out', asset, 'broker.config.json'), 'utf8')),
        );
        expect(Object.keys(shipped.providers).sort(), id).toEqual(['acme', 'quiqup']);
      }
    },
  );

  describe('the client from a plain Node script', () => {
    let local: LocalBroker;
    let dataDir: string;
    beforeAll(async () => {
      dataDir = mkdtempSync(join(tmpdir(), 'broker-package-local-'));
      local = await startLocalBroker({
        port: 0,
        dataDir,
        persist: false,
        config: parseConfig({
          providers: { quiqup: { catalog: 'quiqup', environment: 'sandbox' } },
        }),
        refresherIntervalSeconds: 0,
      });
    });
    afterAll(async () => {
      await local?.close();
      if (dataDir) rmSync(dataDir, { recursive: true, force: true });
    });

    it('fetches a token from the offline broker with `node script.mjs`', async () => {
      copyFileSync(join(repo, 'test/package/consumer-client.mjs'), join(consumer, 'client.mjs'));
      // Asynchronously: the broker answering it runs in this process.
      const { stdout: output } = await promisify(execFile)(process.execPath, ['client.mjs'], {
        timeout: 60_000,
        cwd: consumer,
        encoding: 'utf8',
        env: {
          PATH: process.env.PATH,
          BROKER_ENDPOINT: local.url,
          TOKEN_FUNCTION: 'arn:aws:lambda:us-east-1:123456789012:function:token',
          AWS_REGION: 'us-east-1',
          AWS_ACCESS_KEY_ID: 'local',
          AWS_SECRET_ACCESS_KEY: 'local',
        },
      });
      expect(JSON.parse(output.trim())).toEqual({ status: 200, provider: 'quiqup' });
    });
  });
});
