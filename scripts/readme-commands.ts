/**
 * The README's offline commands, read from its fenced blocks marked `offline` (```` ```sh offline ````,
 * ```` ```ts offline ````), and a runner that runs them as written against a real `npm start`.
 * `test/readme-commands.test.ts` runs them on a fresh copy of the repository;
 * `npx tsx scripts/readme-commands.ts` lists them.
 *
 * How a block is run:
 * - a line ending in `npm start` starts the broker in the background (stopping one already
 *   running) and waits until it says it is running; `npm run reset` runs with the broker stopped;
 * - the other lines of a block run in order in one bash (`set -eo pipefail`, so a variable or
 *   function a block defines is there for its next lines), `curl` failing on an HTTP error;
 *   what an `export` line sets stays set for the later blocks, as in one terminal;
 * - a comment `# → …` is the output the command before it must print (`…` stands for anything);
 *   an answer with `"ok":false` fails the command whatever the comment says;
 * - a comment `# First: on http://localhost:3000/, Connect <provider> as <connectionId>` is a
 *   person's step: the runner's `consent` callback does it before the block runs;
 * - `npm install` and `npm test` are reported as not run, with the reason;
 * - an `aws` command needs the AWS CLI v2; without it the command is skipped, and reported so;
 * - a `ts` block is written to a fresh ESM project (`"type": "module"`) and run with `tsx`.
 * `localhost:3000` becomes `localhost:<port>` everywhere.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

export interface ReadmeCommand {
  /** The command as the README writes it (continuation lines joined). */
  text: string;
  /** README line number where it starts. */
  line: number;
  /** The `# → …` comment that follows it, if any. */
  expect?: string;
}

export type ReadmeStep =
  | { type: 'start'; command: ReadmeCommand }
  | { type: 'stopped'; command: ReadmeCommand }
  | { type: 'skipped'; command: ReadmeCommand; reason: string }
  | { type: 'consent'; provider: string; connectionId: string; line: number }
  | { type: 'shell'; commands: ReadmeCommand[] }
  | { type: 'typescript'; code: string; line: number };

/** The README's blocks marked `offline`, in order, as steps to run. */
export function readmeSteps(markdown: string): ReadmeStep[] {
  const steps: ReadmeStep[] = [];
  const lines = markdown.split('\n');
  for (let i = 0; i < lines.length; i += 1) {
    const fence = /^```(\w+) offline\s*$/.exec(lines[i]!);
    if (!fence) continue;
    const start = i + 1;
    const body: string[] = [];
    for (i += 1; i < lines.length && !lines[i]!.startsWith('```'); i += 1) body.push(lines[i]!);
    if (fence[1] === 'ts') {
      steps.push({ type: 'typescript', code: body.join('\n') + '\n', line: start });
      continue;
    }
    let shell: ReadmeCommand[] = [];
    const flush = () => {
      if (shell.length > 0) steps.push({ type: 'shell', commands: shell });
      shell = [];
    };
    for (let j = 0; j < body.length; j += 1) {
      const line = body[j]!;
      const consent = /^# First: on \S+, Connect ([\w-]+) as ([\w-]+)/.exec(line);
      if (consent) {
        steps.push({
          type: 'consent',
          provider: consent[1]!,
          connectionId: consent[2]!,
          line: start + j,
        });
        continue;
      }
      const expected = /^# → (.*)$/.exec(line);
      if (expected && shell.length > 0) {
        shell[shell.length - 1]!.expect = expected[1]!;
        continue;
      }
      if (line.trim() === '' || line.trimStart().startsWith('#')) continue;
      const command: ReadmeCommand = { text: line, line: start + j };
      // A command goes on while a line ends in `\`, `|` or `&&`, or a `{ …; }` stays open.
      while (
        j + 1 < body.length &&
        (/(\\|\||&&)$/.test(command.text) || count(command.text, '{') > count(command.text, '}'))
      ) {
        j += 1;
        command.text += '\n' + body[j];
      }
      const bare = command.text.replace(/\s+#.*$/, '').trim();
      if (/(^|\s)npm start$/.test(bare)) {
        flush();
        steps.push({ type: 'start', command });
      } else if (/^npm (install|test)$/.test(bare)) {
        flush();
        steps.push({ type: 'skipped', command, reason: notRunHere[bare]! });
      } else if (/^npm run reset\b/.test(bare)) {
        flush();
        steps.push({ type: 'stopped', command });
      } else {
        shell.push(command);
      }
    }
    flush();
  }
  return steps;
}

/** The set-up commands a test run cannot repeat, and why that is fine. */
const notRunHere: Record<string, string> = {
  'npm install':
    "needs the npm registry; the fresh copy shares this checkout's node_modules (CI runs it on a fresh clone)",
  'npm test': 'the suite this runner is part of',
};

function count(text: string, char: string): number {
  return text.split(char).length - 1;
}

export interface CommandResult {
  command: string;
  line: number;
  ok: boolean;
  output: string;
  /** Why it was not run, when it was not. */
  skipped?: string;
}

export interface RunOptions {
  /** The checkout to run in (`npm start` and `npm run reset` run there). */
  cwd: string;
  port: number;
  /** node_modules for the fresh TypeScript project. */
  nodeModules: string;
  /** Does a person's step: connect `provider` as `connectionId` through the landing page. */
  consent(baseUrl: string, provider: string, connectionId: string): Promise<void>;
  /** Environment for every command (PATH and the like). */
  env?: NodeJS.ProcessEnv;
}

/** Whether `aws` on the PATH is the AWS CLI v2; its version line either way. */
export function awsCli(env: NodeJS.ProcessEnv = process.env): { v2: boolean; version: string } {
  const out = spawnSync('aws', ['--version'], { encoding: 'utf8', env });
  const version = `${out.stdout ?? ''}${out.stderr ?? ''}`.trim() || 'not installed';
  return { v2: out.status === 0 && /^aws-cli\/2\./.test(version), version };
}

/** Runs the steps in order; stops the broker it started before it returns. */
export async function runReadmeSteps(
  steps: ReadmeStep[],
  options: RunOptions,
): Promise<CommandResult[]> {
  const env: NodeJS.ProcessEnv = { ...process.env, ...options.env, PORT: String(options.port) };
  const local = (text: string) => text.replaceAll('localhost:3000', `localhost:${options.port}`);
  const baseUrl = `http://localhost:${options.port}`;
  const aws = awsCli(env);
  const results: CommandResult[] = [];
  let broker: Broker | undefined;
  try {
    for (const step of steps) {
      if (step.type === 'start') {
        await broker?.stop();
        broker = await startBroker(local(step.command.text), options.cwd, env);
        results.push({
          command: step.command.text,
          line: step.command.line,
          ok: broker.running,
          output: broker.output(),
        });
        if (!broker.running) return results;
      } else if (step.type === 'stopped') {
        await broker?.stop();
        broker = undefined;
        const out = spawnSync('bash', ['-c', local(step.command.text)], {
          cwd: options.cwd,
          env,
          encoding: 'utf8',
        });
        results.push({
          command: step.command.text,
          line: step.command.line,
          ok: out.status === 0,
          output: `${out.stdout}${out.stderr}`,
        });
      } else if (step.type === 'skipped') {
        results.push({
          command: step.command.text,
          line: step.command.line,
          ok: true,
          output: '',
          skipped: step.reason,
        });
      } else if (step.type === 'consent') {
        await options.consent(baseUrl, step.provider, step.connectionId);
      } else if (step.type === 'typescript') {
        results.push(runTypeScript(local(step.code), step.line, options.nodeModules, env));
      } else {
        const run = step.commands.filter((c) => aws.v2 || !/^aws\s/.test(c.text));
        for (const skipped of step.commands.filter((c) => !run.includes(c))) {
          results.push({
            command: skipped.text,
            line: skipped.line,
            ok: true,
            output: '',
            skipped: `needs the AWS CLI v2 (found: ${aws.version})`,
          });
        }
        results.push(...runShell(run, local, options.cwd, env));
        // As in one terminal session: what a block exports, the later blocks have.
        for (const command of run.filter((c) => c.text.startsWith('export '))) {
          for (const [, name, value] of command.text.matchAll(/(\w+)=(\S+)/g)) env[name!] = value;
        }
      }
    }
  } finally {
    await broker?.stop();
  }
  return results;
}

/** A block's commands in one bash, each announced by a marker line to split the output by. */
function runShell(
  commands: ReadmeCommand[],
  local: (text: string) => string,
  cwd: string,
  env: NodeJS.ProcessEnv,
): CommandResult[] {
  if (commands.length === 0) return [];
  const marker = (i: number) => `@@readme-command-${i}@@`;
  const script = [
    'set -eo pipefail',
    // As written, plus: an HTTP error status is a failed command.
    'curl() { command curl --fail-with-body "$@"; }',
    ...commands.flatMap((c, i) => [`printf '\\n%s\\n' '${marker(i)}'`, local(c.text)]),
  ].join('\n');
  const out = spawnSync('bash', ['-c', script], { cwd, env, encoding: 'utf8', timeout: 60_000 });
  const stdout = out.stdout ?? '';
  return commands.map((command, i) => {
    const from = stdout.indexOf(marker(i));
    const to = stdout.indexOf(marker(i + 1));
    const reached = from >= 0;
    const output = reached
      ? stdout.slice(from + marker(i).length, to >= 0 ? to : undefined).trim()
      : '';
    // The command that ran last owns the exit status; those never reached failed too.
    const last = to < 0;
    const exitedOk = reached && (!last || out.status === 0);
    const expectation = command.expect ? local(command.expect) : undefined;
    const matches = expectation === undefined || patternOf(expectation).test(output);
    return {
      command: command.text,
      line: command.line,
      ok: exitedOk && matches && !/"ok":\s*false/.test(output),
      output:
        output +
        (last && out.status !== 0 ? `\n[exit ${out.status}] ${out.stderr ?? ''}` : '') +
        (matches ? '' : `\n[expected to contain: ${expectation}]`),
    };
  });
}

/** `# → {"ok":true,…}` as a pattern: literal text, `…` standing for anything. */
function patternOf(expected: string): RegExp {
  const parts = expected.split('…').map((part) => part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'));
  return new RegExp(parts.join('[\\s\\S]*?'));
}

function runTypeScript(
  code: string,
  line: number,
  nodeModules: string,
  env: NodeJS.ProcessEnv,
): CommandResult {
  const project = mkdtempSync(join(tmpdir(), 'readme-ts-'));
  try {
    const name = /^\/\/ (\S+\.ts)$/m.exec(code)?.[1] ?? 'snippet.ts';
    writeFileSync(
      join(project, 'package.json'),
      JSON.stringify({ name: 'readme-snippet', private: true, type: 'module' }),
    );
    symlinkSync(nodeModules, join(project, 'node_modules'), 'dir');
    writeFileSync(join(project, name), code);
    const out = spawnSync('npx', ['tsx', name], {
      cwd: project,
      env,
      encoding: 'utf8',
      timeout: 60_000,
    });
    return {
      command: `npx tsx ${name} (README line ${line})`,
      line,
      ok: out.status === 0,
      output: `${out.stdout}${out.status === 0 ? '' : out.stderr}`.trim(),
    };
  } finally {
    rmSync(project, { recursive: true, force: true });
  }
}

interface Broker {
  running: boolean;
  output(): string;
  stop(): Promise<void>;
}

/** Runs `command` (ending in `npm start`) in its own process group until it says it is up. */
async function startBroker(command: string, cwd: string, env: NodeJS.ProcessEnv): Promise<Broker> {
  const child: ChildProcess = spawn('bash', ['-c', command], { cwd, env, detached: true });
  let output = '';
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
  const exited = new Promise<void>((done) => child.on('exit', () => done()));
  let alive = true;
  void exited.then(() => (alive = false));
  const deadline = Date.now() + 60_000;
  while (alive && !output.includes('is running offline at') && Date.now() < deadline) {
    await new Promise((done) => setTimeout(done, 100));
  }
  const stop = async () => {
    if (!alive) return;
    process.kill(-child.pid!, 'SIGINT');
    const stopped = await Promise.race([
      exited.then(() => true),
      new Promise<boolean>((done) => setTimeout(() => done(false), 15_000)),
    ]);
    if (!stopped) process.kill(-child.pid!, 'SIGKILL');
    await exited;
  };
  const running = alive && output.includes('is running offline at');
  if (!running) await stop();
  return { running, output: () => output, stop };
}

// `npx tsx scripts/readme-commands.ts`: what the test would run.
if (import.meta.url === pathToFileURL(resolve(process.argv[1] ?? '')).href) {
  for (const step of readmeSteps(readFileSync('README.md', 'utf8'))) {
    if (step.type === 'consent') {
      console.log(`# person, line ${step.line}: Connect ${step.provider} as ${step.connectionId}`);
    } else if (step.type === 'typescript') {
      console.log(`# TypeScript snippet, line ${step.line}, in a fresh ESM project`);
    } else {
      const commands = step.type === 'shell' ? step.commands : [step.command];
      if (step.type === 'skipped') console.log(`# not run: ${step.reason}`);
      for (const c of commands) console.log(`# ${step.type}, line ${c.line}\n${c.text}`);
    }
  }
}
