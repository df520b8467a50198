import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../shared/config.ts';
import { captureOutput, startTestBroker } from './helpers/local.ts';

// `npm start` as a user runs it: tsx on infra/local/main.ts in a folder of its own (its .broker/
// lives there), over real processes, ports and files (issue 13 items 6 and 7).

const root = resolve(import.meta.dirname, '..');
const tsx = join(root, 'node_modules/tsx/dist/cli.mjs');
const main = join(root, 'infra/local/main.ts');

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function npmStart(cwd: string, env: Record<string, string>): ChildProcess {
  return spawn(process.execPath, [tsx, main], {
    cwd,
    env: {
      ...process.env,
      AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
      POWERTOOLS_LOG_LEVEL: 'ERROR',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}

/** Runs npm start until it exits (a failed start). */
function failedStart(cwd: string, env: Record<string, string>): Promise<Run> {
  const child = npmStart(cwd, env);
  const run: Run = { code: null, stdout: '', stderr: '' };
  child.stdout!.on('data', (data) => (run.stdout += data));
  child.stderr!.on('data', (data) => (run.stderr += data));
  const giveUp = setTimeout(() => child.kill('SIGKILL'), 30_000);
  return new Promise((done) =>
    child.on('exit', (code) => {
      clearTimeout(giveUp);
      done({ ...run, code });
    }),
  );
}

/** Starts npm start and waits for its banner; `stop()` ends it as Ctrl-C would. */
async function runningStart(cwd: string, env: Record<string, string>) {
  const child = npmStart(cwd, env);
  const run: Run = { code: null, stdout: '', stderr: '' };
  child.stderr!.on('data', (data) => (run.stderr += data));
  const exited = new Promise<void>((done) => child.on('exit', () => done()));
  await new Promise<void>((done, fail) => {
    child.stdout!.on('data', (data) => {
      run.stdout += data;
      if (run.stdout.includes('Stop with Ctrl-C.')) done();
    });
    child.on('exit', (code) => fail(new Error(`npm start exited (${code}): ${run.stderr}`)));
  });
  return {
    run,
    url: /running offline at (\S+)/.exec(run.stdout)![1]!,
    async stop() {
      child.kill('SIGTERM');
      await exited;
    },
  };
}

/** One line on stderr, naming what to do, no stack trace. */
function expectOneClearLine(run: Run, pattern: RegExp): void {
  expect(run.code).toBe(1);
  const lines = run.stderr.trim().split('\n');
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatch(pattern);
  expect(run.stderr).not.toMatch(/^\s+at /m);
}

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'broker-start-'));
  writeFileSync(
    join(dir, 'broker.config.json'),
    JSON.stringify({
      providers: {
        quiqup: { catalog: 'quiqup', environment: 'sandbox' },
        quidkey: { catalog: 'quidkey', environment: 'sandbox' },
      },
    }),
  );
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('npm start: start-up failures are one clear line, exit 1, no stack', () => {
  it('a second npm start in the same checkout (the store is locked)', async () => {
    const first = await runningStart(dir, { PORT: '0' });
    try {
      const second = await failedStart(dir, { PORT: '0' });
      expectOneClearLine(
        second,
        /^npm start: The local store .*dynalite is in use by another npm start .*stop that one first/,
      );
      expect(second.stderr).not.toContain('Database is closed');
      // The first one still answers.
      expect((await fetch(`${first.url}/local/events`)).status).toBe(200);
    } finally {
      await first.stop();
    }
  });

  it('a busy port', async () => {
    const holder: Server = createServer();
    await new Promise<void>((done) => holder.listen(0, '127.0.0.1', done));
    const port = (holder.address() as { port: number }).port;
    try {
      const other = mkdtempSync(join(tmpdir(), 'broker-start-port-'));
      writeFileSync(join(other, 'broker.config.json'), '{"providers":{}}');
      const run = await failedStart(other, { PORT: String(port) });
      rmSync(other, { recursive: true, force: true });
      expectOneClearLine(
        run,
        new RegExp(`^npm start: Port ${port} is already in use.*PORT=<port> npm start`),
      );
      expect(run.stderr).not.toContain('EADDRINUSE:');
    } finally {
      holder.close();
    }
  });

  it.each([
    [
      'an unknown kind',
      '{"providers":{"x":{"kind":"nope"}}}',
      /providers\.x\.kind: unknown kind "nope"/,
    ],
    ['a file that is not JSON', '{"providers":', /not valid JSON/],
    ['a required key missing', '{"provders":{}}', /providers: Expected required property/],
  ])('a configuration error: %s', async (_what, text, pattern) => {
    writeFileSync(join(dir, 'bad.config.json'), text);
    const run = await failedStart(dir, { PORT: '0', BROKER_CONFIG: 'bad.config.json' });
    expectOneClearLine(run, /^npm start: .*bad\.config\.json: .*Fix it and start again\.$/);
    expect(run.stderr).toMatch(pattern);
  });

  it('a PORT that is not a port, and a secrets file that is not JSON (its text never echoed)', async () => {
    expectOneClearLine(
      await failedStart(dir, { PORT: 'abc' }),
      /^npm start: PORT must be a port number/,
    );
    writeFileSync(join(dir, 'broken-secrets.json'), '{"quiqup": {"client_secret": "s3cret-value"');
    const run = await failedStart(dir, { PORT: '0', BROKER_SECRETS_FILE: 'broken-secrets.json' });
    expectOneClearLine(
      run,
      /^npm start: The secrets file .*broken-secrets\.json is not a JSON object/,
    );
    expect(run.stderr).not.toContain('s3cret');
  });
});

describe('BROKER_SECRETS_FILE and providers that are not set up (issue 13 item 6)', () => {
  it('npm start reads the named file, and says at start-up which provider lacks what, one line each', async () => {
    writeFileSync(
      join(dir, 'my-secrets.json'),
      JSON.stringify({
        quidkey: { client_id: 'sandbox-quidkey-mine', client_secret: 'hunter2-secret' },
      }),
    );
    const started = await runningStart(dir, { PORT: '0', BROKER_SECRETS_FILE: 'my-secrets.json' });
    try {
      expect(started.run.stdout).toContain(`secrets: ${join(dir, 'my-secrets.json')}`);
      // Printed after the banner, on the other stream: wait for it to arrive.
      for (let i = 0; i < 100 && !started.run.stderr.includes('\n'); i += 1) {
        await new Promise((done) => setTimeout(done, 50));
      }
      const warnings = started.run.stderr
        .trim()
        .split('\n')
        .filter((line) => line.startsWith('warning:'));
      expect(warnings).toEqual([
        `warning: The quiqup provider is not set up: its secret is missing (see the entry "quiqup" of ${join(dir, 'my-secrets.json')}). Add it and restart; quiqup answers provider_misconfigured until then.`,
      ]);
      // The named file's own client works against the sandbox: it was read, not replaced.
      const answer = await fetch(`${started.url}/2015-03-31/functions/token/invocations`, {
        method: 'POST',
        body: '{"provider":"quidkey"}',
      });
      expect(await answer.json()).toMatchObject({ ok: true, provider: 'quidkey' });
      const refused = await fetch(`${started.url}/2015-03-31/functions/token/invocations`, {
        method: 'POST',
        body: '{"provider":"quiqup"}',
      });
      expect(await refused.json()).toEqual({
        ok: false,
        error: {
          code: 'provider_misconfigured',
          message: 'The quiqup provider is not set up: its secret is missing.',
        },
      });
      expect(started.run.stderr + started.run.stdout).not.toContain('hunter2-secret');
    } finally {
      await started.stop();
    }
  });

  it('a secret that lacks a field answers provider_misconfigured naming the provider and the field, never a value', async () => {
    const secretsFile = join(dir, 'partial-secrets.json');
    writeFileSync(
      secretsFile,
      JSON.stringify({
        quiqup: { client_id: 'an-id-value' },
        quidkey: { client_id: 'other-id', client_secret: '' },
        quicko: { api_key: 'k', api_secret: 42 },
      }),
    );
    const local = await startTestBroker({
      secretsFile,
      config: parseConfig({
        providers: {
          quiqup: { catalog: 'quiqup', environment: 'sandbox' },
          quidkey: { catalog: 'quidkey', environment: 'sandbox' },
          quicko: { catalog: 'quicko', environment: 'sandbox' },
        },
      }),
    });
    try {
      const before = await local.itemCount();
      // Logged at error level (the operator's to fix), with where the secret lives.
      const { result: quiqup, output } = await captureOutput(() =>
        local.invoke({ provider: 'quiqup' }),
      );
      expect(output).toMatch(
        /"level":"ERROR".*"code":"provider_misconfigured".*see the entry \\"quiqup\\" of .*partial-secrets\.json/,
      );
      expect(output).not.toContain('an-id-value');
      expect(quiqup).toEqual({
        ok: false,
        error: {
          code: 'provider_misconfigured',
          message: 'The quiqup provider is not set up: its secret lacks client_secret.',
        },
      });
      const quidkey = await captureOutput(() => local.invoke({ provider: 'quidkey' }));
      expect(quidkey.result).toMatchObject({
        error: {
          code: 'provider_misconfigured',
          message: 'The quidkey provider is not set up: its secret lacks client_secret.',
        },
      });
      // A consent provider: its connect page says so, as a 503 (the set-up, not the link).
      const session = await local.invokeFunction('connections', {
        action: 'createConnectSession',
        provider: 'quicko',
        connectionId: 'someone',
      });
      const { result: page } = await captureOutput(() =>
        fetch(session.url as string, { redirect: 'manual' }),
      );
      expect(page.status).toBe(503);
      const html = await page.text();
      expect(html).toContain(
        'The quicko provider is not set up: its secret is not a JSON object of strings.',
      );
      expect(html).not.toContain('partial-secrets');
      expect(await local.itemCount()).toBe(before + 1); // only the connect session
    } finally {
      await local.close();
    }
  });
});
