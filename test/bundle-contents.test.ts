import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  bundleWithStackSettings,
  inputBytesIn,
  type BundleMeasurement,
} from '../scripts/measure-bundle.ts';
import { parseConfig } from '../shared/config.ts';
import { InvalidRequestError } from '../shared/errors.ts';
import { tokenRequestSchema } from '../shared/token-request.ts';
import { validateRequest } from '../shared/validate.ts';

// What a function loads at every cold start: its bundle as the stack builds it (esbuild's
// metafile) and the chunks that bundle imports statically. Node compiles all of it whether it runs
// or not, so what the token and refresher functions never run stays out: the connect flows, and
// TypeBox with every schema (their configuration was validated at synth; a token request is
// checked by a generated check, and its schema is loaded only to explain a refusal). The
// connections function, which does validate with TypeBox, is the control: the same reading finds
// both there.

let root: string;
const bundles = new Map<string, BundleMeasurement>();

beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), 'broker-bundles-'));
  for (const name of ['token', 'refresher', 'connections']) {
    bundles.set(
      name,
      await bundleWithStackSettings(resolve(`functions/${name}.ts`), join(root, name)),
    );
  }
}, 120_000);

afterAll(() => {
  if (root) rmSync(root, { recursive: true, force: true });
});

/** The source files (metafile inputs) with code in what `name` loads at import. */
function loadedAtImport(name: string): string[] {
  const bundle = bundles.get(name)!;
  return [...inputBytesIn(bundle.metafile, bundle.filesAtImport)]
    .filter(([, bytes]) => bytes > 0)
    .map(([path]) => path);
}

const typebox = (path: string) => path.includes('node_modules/@sinclair/typebox/');
const connectCode = (path: string) =>
  path.startsWith('shared/connect/') || path === 'shared/store/connection-directory.ts';
const schemas = (path: string) =>
  path.startsWith('shared/providers/config/') ||
  ['shared/token-request.ts', 'shared/validate.ts', 'shared/config.ts'].includes(path);

describe('what a function loads at import', () => {
  it.each(['token', 'refresher'])(
    '%s: nothing of TypeBox, the schemas or the connect flows',
    (name) => {
      const loaded = loadedAtImport(name);
      expect(loaded).toContain('shared/token-service.ts');
      expect(loaded.filter(typebox)).toEqual([]);
      expect(loaded.filter(schemas)).toEqual([]);
      expect(loaded.filter(connectCode)).toEqual([]);
    },
  );

  it('connections (the control): TypeBox and the connect flows, found the same way', () => {
    const loaded = loadedAtImport('connections');
    expect(loaded.filter(typebox).length).toBeGreaterThan(0);
    expect(loaded).toContain('shared/connect/connections-api.ts');
    expect(loaded).toContain('shared/store/connection-directory.ts');
  });

  it('token: the schema and TypeBox are a chunk of the bundle, loaded on demand', () => {
    const bundle = bundles.get('token')!;
    const onDemand = Object.keys(bundle.metafile.outputs)
      .map((path) => resolve(path))
      .filter((path) => !path.endsWith('.map') && !bundle.filesAtImport.includes(path));
    const inputs = [...inputBytesIn(bundle.metafile, onDemand).keys()];
    expect(inputs).toContain('shared/token-request.ts');
    expect(inputs.filter(typebox).length).toBeGreaterThan(0);
  });
});

describe('the token bundle refuses a bad request as the handler in source does', () => {
  it.each([
    [{ provider: 'quidkey', connectionId: 'has space' }],
    [{ provider: 'quipt', sign: { method: 'GET' } }],
    [{ provider: '' }],
    [[]],
  ])('%j', async (payload) => {
    const expected = (() => {
      try {
        validateRequest(tokenRequestSchema, payload);
      } catch (error) {
        return (error as InvalidRequestError).message;
      }
      return expect.fail('accepted');
    })();
    // A fresh process, as a cold container: the handler builds its broker (no call is made) and
    // the refusal loads its chunk.
    const script = `
      const { handler } = await import(${JSON.stringify(pathToFileURL(bundles.get('token')!.outfile).href)});
      const answer = await handler(${JSON.stringify(payload)}, {
        functionName: 'token', functionVersion: '$LATEST', memoryLimitInMB: '256',
        invokedFunctionArn: 'arn:aws:lambda:us-east-1:123456789012:function:token',
        awsRequestId: 'c6af9ac6-7b61-11e6-9a41-93e812345678', getRemainingTimeInMillis: () => 30000,
      });
      console.log('ANSWER ' + JSON.stringify(answer));
    `;
    const { stdout } = await promisify(execFile)(
      process.execPath,
      ['--enable-source-maps', '--input-type=module', '-e', script],
      {
        timeout: 30_000,
        encoding: 'utf8',
        env: {
          PATH: process.env.PATH,
          POWERTOOLS_LOG_LEVEL: 'ERROR',
          // A configuration as the construct deploys it, and local adapters no call reaches.
          BROKER_CONFIG_JSON: JSON.stringify(
            parseConfig({ providers: { quidkey: { catalog: 'quidkey' } } }),
          ),
          BROKER_TABLE_NAME: 'unused',
          BROKER_MODE: 'local',
          BROKER_LOCAL_KEY: randomBytes(32).toString('base64'),
          BROKER_SECRETS_FILE: join(root, 'no-secrets.json'),
        },
      },
    );
    const answer = JSON.parse(/^ANSWER (.*)$/m.exec(stdout)?.[1] ?? 'null') as unknown;
    expect(answer).toEqual({ ok: false, error: { code: 'invalid_request', message: expected } });
  });
});
