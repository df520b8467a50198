import { execFileSync, spawnSync } from 'node:child_process';
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  symlinkSync,
} from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  awsCli,
  readmeSteps,
  runReadmeSteps,
  type CommandResult,
} from '../scripts/readme-commands.ts';
import { TestBrowser } from './helpers/browser.ts';

// The README's offline walk-through, as written, on a fresh copy of the repository (the files
// git would check out: tracked and new, nothing ignored, so no `.broker/`), against a real
// `npm start` on a free port. The person's steps on the landing page (Connect, Allow) are done
// over HTTP by a TestBrowser, as the README's comments say where they happen.

const repo = resolve(import.meta.dirname, '..');
const readme = readFileSync(join(repo, 'README.md'), 'utf8');
const aws = awsCli();
if (!aws.v2) {
  console.warn(
    `AWS CLI v2 not found (aws --version: ${aws.version}): the README's aws commands are skipped; everything else runs.`,
  );
}

let checkout: string;
beforeAll(() => {
  checkout = mkdtempSync(join(tmpdir(), 'readme-checkout-'));
  const files = execFileSync(
    'git',
    ['ls-files', '-z', '--cached', '--others', '--exclude-standard'],
    {
      cwd: repo,
      encoding: 'utf8',
    },
  )
    .split('\0')
    .filter((file) => file && existsSync(join(repo, file)));
  for (const file of files) {
    mkdirSync(dirname(join(checkout, file)), { recursive: true });
    copyFileSync(join(repo, file), join(checkout, file));
  }
  symlinkSync(join(repo, 'node_modules'), join(checkout, 'node_modules'), 'dir');
});
afterAll(() => {
  if (checkout) rmSync(checkout, { recursive: true, force: true });
});

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
  const { port } = server.address() as { port: number };
  await new Promise((done) => server.close(done));
  return port;
}

/** What a person does on the landing page: Connect, then the sandbox's consent (OTP first for Quicko). */
async function consent(baseUrl: string, provider: string, connectionId: string): Promise<void> {
  const browser = new TestBrowser();
  const start = await browser.request(`${baseUrl}/local/connect`, {
    form: { provider, connectionId },
    headers: { origin: baseUrl },
  });
  expect(start.status).toBe(303);
  const consentPage = await browser.follow(
    new URL(start.headers.get('location')!, baseUrl).toString(),
  );
  let url = consentPage.url;
  let html = await consentPage.response!.text();
  const otp = /id="otp">(\d+)</.exec(html)?.[1];
  if (otp) {
    const verified = await browser.submitForm(html, url, { otp });
    html = await verified.text();
  }
  const decided = await browser.submitForm(html, url, { decision: 'allow' });
  url = (await browser.follow(new URL(decided.headers.get('location')!, url).toString())).url;
  expect(new URL(url).searchParams.get('status'), `Connect ${provider} as ${connectionId}`).toBe(
    'connected',
  );
}

const describeFailures = (results: CommandResult[]) =>
  results
    .filter((r) => !r.ok)
    .map((r) => `README line ${r.line}: ${r.command}\n${r.output}`)
    .join('\n\n');

describe('README, offline, as written', () => {
  const steps = readmeSteps(readme);
  let results: CommandResult[] = [];

  it('marks its offline blocks: set-up, token fetches, renewal, connect, the TypeScript snippet', () => {
    const text = steps.flatMap((s) =>
      s.type === 'shell' ? s.commands.map((c) => c.text) : 'command' in s ? [s.command.text] : [],
    );
    expect(text).toContainEqual(expect.stringMatching(/^npm start/));
    expect(text).toContain('npm run reset');
    expect(text).toContainEqual(
      expect.stringMatching(/SANDBOX_QUIQUP_TOKEN_SECONDS=90 .*npm start$/),
    );
    expect(text).toContainEqual(expect.stringContaining('"action":"createConnectSession"'));
    expect(text).toContainEqual(expect.stringContaining('"sign":{"method":"POST"'));
    expect(steps.filter((s) => s.type === 'typescript')).toHaveLength(1);
    expect(steps.filter((s) => s.type === 'consent')).toHaveLength(1);
  });

  it('every offline command succeeds against a real npm start on a fresh copy', async () => {
    const port = await freePort();
    results = await runReadmeSteps(steps, {
      cwd: checkout,
      port,
      nodeModules: join(repo, 'node_modules'),
      consent,
    });
    if (process.env.README_DUMP) console.log(JSON.stringify(results, null, 1));
    const skipped = results.filter((r) => r.skipped);
    for (const r of skipped)
      console.warn(`README line ${r.line} not run (${r.skipped}): ${r.command}`);
    expect(describeFailures(results)).toBe('');
    // Everything but npm install, npm test and (without CLI v2) the aws commands ran.
    expect(skipped.every((r) => /^(npm (install|test)|aws )/.test(r.command))).toBe(true);
    expect(results.filter((r) => !r.skipped).length).toBeGreaterThanOrEqual(12);

    // The TypeScript snippet printed the header value it promises.
    const snippet = results.find((r) => r.command.startsWith('npx tsx'));
    expect(snippet?.output).toMatch(/^Bearer sbx_quidkey\./);
    // The renewal recipe, run after a first npm start whose tokens last an hour: its token
    // lives 90 s, and the refresher renews it at once.
    const recipeFetch = results.find(
      (r) => r.line > results.find((x) => x.command.includes('SANDBOX_QUIQUP'))!.line,
    )!;
    const expiresAt = Date.parse(JSON.parse(recipeFetch.output).expiresAt as string);
    expect(expiresAt - Date.now()).toBeLessThanOrEqual(90_000);
    expect(results.find((r) => r.command.includes('functions/refresher'))?.output).toMatch(
      /"refreshed":1/,
    );
  }, 240_000);

  it.skipIf(!aws.v2)('the aws commands ran with the AWS CLI v2', () => {
    const awsRuns = results.filter((r) => r.command.startsWith('aws ') && !r.skipped);
    expect(awsRuns.length).toBeGreaterThan(0);
    expect(awsRuns.every((r) => r.ok)).toBe(true);
  });

  it('npm run reset refuses while npm start runs, then clears the store and keeps the key', async () => {
    const dataDir = join(checkout, '.broker');
    expect(existsSync(join(dataDir, 'local-master.key'))).toBe(true);
    const key = readFileSync(join(dataDir, 'local-master.key'), 'utf8');
    const port = await freePort();
    const during = await runReadmeSteps(
      [
        { type: 'start', command: { text: 'npm start', line: 0 } },
        { type: 'shell', commands: [{ text: 'npm run -s reset', line: 0 }] },
      ],
      { cwd: checkout, port, nodeModules: join(repo, 'node_modules'), consent },
    );
    expect(during[0]!.ok).toBe(true);
    expect(during[1]).toMatchObject({ ok: false });
    expect(during[1]!.output).toMatch(/is open in a running `npm start`.*stop it/);
    expect(existsSync(join(dataDir, 'dynalite'))).toBe(true);
    expect(existsSync(join(dataDir, 'events.json'))).toBe(true);

    const reset = spawnSync('npm', ['run', '-s', 'reset'], { cwd: checkout, encoding: 'utf8' });
    expect(reset.status).toBe(0);
    expect(reset.stdout).toMatch(/Removed .broker\/dynalite/);
    expect(existsSync(join(dataDir, 'dynalite'))).toBe(false);
    expect(existsSync(join(dataDir, 'events.json'))).toBe(false);
    expect(readFileSync(join(dataDir, 'local-master.key'), 'utf8')).toBe(key);
    expect(existsSync(join(dataDir, 'secrets.json'))).toBe(true);
  }, 120_000);
});
