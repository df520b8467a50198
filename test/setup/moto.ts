import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import type { TestProject } from 'vitest/node';

declare module 'vitest' {
  export interface ProvidedContext {
    /** URL of a moto server started for this run, or '' when moto is not installed. */
    motoUrl: string;
  }
}

let moto: ChildProcess | undefined;

/**
 * Starts moto (an AWS API emulator: DynamoDB, KMS, Secrets Manager) on a free loopback port when
 * python3 has it, so the AWS adapters are tested against a real AWS-compatible peer. Without it
 * the AWS adapter tests say plainly that they were skipped.
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const python = process.env.MOTO_PYTHON ?? 'python3';
  const probe = spawnSync(python, ['-c', 'import moto.server'], { stdio: 'ignore' });
  if (probe.status !== 0) {
    console.warn(
      'moto is not installed (python3 -m moto.server): the AWS adapter tests will be skipped.',
    );
    project.provide('motoUrl', '');
    return async () => {};
  }
  const port = await freePort();
  moto = spawn(python, ['-m', 'moto.server', '-H', '127.0.0.1', '-p', String(port)], {
    stdio: 'ignore',
  });
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 30_000;
  for (;;) {
    try {
      const response = await fetch(`${url}/moto-api/`);
      if (response.ok || response.status < 500) break;
    } catch {
      // not up yet
    }
    if (Date.now() > deadline) throw new Error('moto did not start within 30 s');
    await new Promise((done) => setTimeout(done, 200));
  }
  project.provide('motoUrl', url);
  return async () => {
    moto?.kill();
  };
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() =>
        typeof address === 'object' && address
          ? resolve(address.port)
          : reject(new Error('no port')),
      );
    });
  });
}
