import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../shared/config.ts';
import { defaultLeaseMs } from '../shared/refresh.ts';
import { consentTokens, testKinds } from './helpers/consent-kind.ts';
import { startTestBroker, type TestBroker } from './helpers/local.ts';

// A holder that dies or stalls mid-call, in a process of its own (test/helpers/renewing-holder.ts):
// only the lease in the table can tell the others. The provider rotates refresh tokens strictly
// but, like many OAuth servers, accepts a used one again for 30 s: the killed holder's call
// consumed the refresh token and its answer is lost, so the connection survives only if another
// caller takes over within that grace. Real time throughout (two processes share no test clock).
let local: TestBroker;
const children: ChildProcess[] = [];
const configInput = {
  providers: {
    quidkey: { catalog: 'quidkey', environment: 'sandbox' }, // its client secret serves `consent`
    consent: { kind: 'test-consent', environment: 'sandbox', via: 'quidkey' },
  },
};

beforeAll(async () => {
  local = await startTestBroker({
    config: parseConfig(configInput, { kinds: testKinds }),
    kinds: testKinds,
    realTime: true,
  });
});
afterAll(async () => {
  for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
  await local.close();
});

async function startHolder(connectionId: string) {
  const endpoint = await local.dynamo.config.endpoint!();
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', fileURLToPath(new URL('./helpers/renewing-holder.ts', import.meta.url))],
    {
      env: {
        ...process.env,
        HOLDER_DATA_DIR: local.dataDir,
        HOLDER_CONFIG: JSON.stringify(configInput),
        HOLDER_DYNAMO_ENDPOINT: `${endpoint.protocol}//${endpoint.hostname}:${endpoint.port}`,
        HOLDER_TABLE: local.tableName,
        HOLDER_SANDBOX_URL: `${local.url}/sandbox`,
        HOLDER_PROVIDER: 'consent',
        HOLDER_CONNECTION_ID: connectionId,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  children.push(child);
  let output = '';
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
  const exited = new Promise<void>((done) => child.once('exit', () => done()));
  return { child, exited, output: () => output };
}

async function until(condition: () => boolean, what: string, timeoutMs = 30_000) {
  const giveUp = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > giveUp) throw new Error(`timed out waiting for ${what}`);
    await new Promise((done) => setTimeout(done, 20));
  }
}

describe('a holder in another process dies or stalls mid-call', () => {
  it.each(['SIGKILL', 'SIGSTOP'] as const)(
    `%s mid-call: taken over once its lease lapses (≤ ${defaultLeaseMs} ms after its last heartbeat), within the provider’s 30 s grace; the connection survives`,
    async (signal) => {
      const sandbox = local.sandboxes.quidkey;
      const connectionId = `crash-${signal}`;
      const seeded = await consentTokens(local);
      // Expired, so every caller wants to renew it (times from the real clock: see above).
      await local.broker.store.create(
        'consent',
        connectionId,
        { ...seeded, expiresAt: Date.now() - 1, refreshTokenExpiresAt: Date.now() + 86_400_000 },
        Date.now(),
      );
      sandbox.rotateRefreshTokens = true;
      sandbox.rotationGraceSeconds = 30;
      sandbox.fault = { type: 'delay', ms: 2_000 }; // every call is in flight for 2 s
      const graceBefore = sandbox.graceReuses;
      const refreshesBefore = sandbox.callCount('refresh');

      const holder = await startHolder(connectionId);
      await until(
        () => sandbox.callCount('refresh') > refreshesBefore,
        'the holder’s provider call',
      );
      holder.child.kill(signal);
      const stoppedAt = Date.now();
      sandbox.fault = undefined; // the holder's call stays in flight; the taker's will not be
      const leased = (await local.broker.store.get('consent', connectionId))!;
      expect(leased.lease).toBeDefined();
      // The dead holder's lease ends within one lease time of its death, whatever the provider's
      // timeout (30 s in that process): that is what bounds the takeover.
      expect(leased.lease!.expiresAt).toBeLessThanOrEqual(stoppedAt + defaultLeaseMs);

      // A caller in this container waits on that lease, then takes over with the same refresh
      // token the dead holder had already spent.
      const answer = await local.invoke({ provider: 'consent', connectionId });
      const takeoverMs = Date.now() - stoppedAt;
      expect(answer, JSON.stringify(answer)).toMatchObject({ ok: true });
      expect(sandbox.callCount('refresh')).toBe(refreshesBefore + 2);
      expect(sandbox.graceReuses).toBe(graceBefore + 1); // accepted only thanks to the grace
      expect(sandbox.reusedRefreshTokens).toBe(0);
      const stored = (await local.broker.store.get('consent', connectionId))!;
      expect(stored).toMatchObject({ status: 'active', refreshFailures: 0 });
      expect(stored.lease).toBeUndefined();
      expect(stored.lastRefreshedAt).toBeGreaterThanOrEqual(leased.lease!.expiresAt);

      if (signal === 'SIGSTOP') {
        // The stalled holder wakes up with its own (older) answer: it defers to the newer write.
        holder.child.kill('SIGCONT');
        await holder.exited;
        expect(holder.output()).toContain('{"ok":true}');
        expect((await local.broker.store.get('consent', connectionId))!.version).toBe(
          stored.version,
        );
      }
      // The stored refresh token is the live one: the next renewal works.
      const next = await local.invoke({ provider: 'consent', connectionId, forceRefresh: true });
      expect(next.ok).toBe(true);
      expect(sandbox.reusedRefreshTokens).toBe(0);
      console.log(`${signal}: taken over and renewed ${takeoverMs} ms after the holder stopped`);
    },
    60_000,
  );
});
