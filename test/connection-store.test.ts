import { UpdateCommand, DynamoDBDocumentClient, GetCommand } from '@aws-sdk/lib-dynamodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { VersionConflictError } from '../shared/errors.ts';
import type { TokenSet } from '../shared/providers/types.ts';
import { refreshConnection } from '../shared/refresh.ts';
import { logger } from '../shared/logger.ts';
import { connectionPk } from '../shared/store/table.ts';
import { captureOutput, startTestBroker, type TestBroker } from './helpers/local.ts';

// The store and the refresh protocol against the embedded DynamoDB (dynalite) of the offline
// runtime: conditional writes, leases and the envelope ciphertext as they are really stored.
let local: TestBroker;
let db: DynamoDBDocumentClient;
const tokens = (n: number): TokenSet => ({
  accessToken: `access-${n}`,
  tokenType: 'Bearer',
  expiresAt: Date.now() + 60_000,
});

beforeAll(async () => {
  local = await startTestBroker();
  db = DynamoDBDocumentClient.from(local.dynamo);
});
afterAll(() => local.close());

describe('connection store', () => {
  it('stores tokens only as ciphertext', async () => {
    const store = local.broker.store;
    await store.create(
      'quiqup',
      'default',
      { ...tokens(1), refreshToken: 'refresh-secret-1' },
      local.clock.t,
    );
    const raw = await db.send(
      new GetCommand({
        TableName: local.tableName,
        Key: { pk: connectionPk('quiqup', 'default') },
      }),
    );
    expect(JSON.stringify(raw.Item)).not.toMatch(/access-1|refresh-secret-1/);
    expect(raw.Item!.tokens).toMatch(/^v2\./);
    expect((await store.get('quiqup', 'default'))!.tokens.refreshToken).toBe('refresh-secret-1');
  });

  it('refuses a second create and a write at a stale version', async () => {
    const store = local.broker.store;
    await expect(
      store.create('quiqup', 'default', tokens(2), local.clock.t),
    ).rejects.toBeInstanceOf(VersionConflictError);
    const read = (await store.get('quiqup', 'default'))!;
    const written = await store.saveTokens(read, tokens(3), local.clock.t);
    expect(written.version).toBe(read.version + 1);
    await expect(store.saveTokens(read, tokens(4), local.clock.t)).rejects.toBeInstanceOf(
      VersionConflictError,
    );
    expect((await store.get('quiqup', 'default'))!.tokens.accessToken).toBe('access-3');
  });

  it('refuses ciphertexts swapped between two items', async () => {
    const store = local.broker.store;
    await store.create('quidkey', 'default', tokens(10), local.clock.t);
    const a = await db.send(
      new GetCommand({
        TableName: local.tableName,
        Key: { pk: connectionPk('quiqup', 'default') },
      }),
    );
    await db.send(
      new UpdateCommand({
        TableName: local.tableName,
        Key: { pk: connectionPk('quidkey', 'default') },
        UpdateExpression: 'SET tokens = :t',
        ExpressionAttributeValues: { ':t': a.Item!.tokens },
      }),
    );
    await expect(store.get('quidkey', 'default')).rejects.toMatchObject({
      code: 'internal_error',
      message: 'The stored tokens of quidkey/default could not be decrypted.',
    });
    // The token function fails that invocation (internal_error), without the ciphertext or a token.
    const { result: answer, output } = await captureOutput(() =>
      local.invoke({ provider: 'quidkey' }),
    );
    expect(answer).toMatchObject({ errorType: 'BrokerInternalError' });
    expect(JSON.stringify(answer)).not.toContain('access-');
    expect(output).toMatch(/"level":"ERROR".*could not be decrypted/);
    expect(output).not.toContain(a.Item!.tokens as string);
  });
});

describe('refresh lease (fenced)', () => {
  it('only one holder at a time; a lapsed lease is taken over', async () => {
    const store = local.broker.store;
    const read = (await store.get('quiqup', 'default'))!;
    const now = local.clock.t;
    await store.acquireLease(read, 'holder-a', now, 30_000);
    await expect(store.acquireLease(read, 'holder-b', now + 1_000, 30_000)).rejects.toBeInstanceOf(
      VersionConflictError,
    );
    const taken = await store.acquireLease(read, 'holder-b', now + 31_000, 30_000);
    expect(taken.lease).toEqual({ holder: 'holder-b', expiresAt: now + 61_000 });
    await store.releaseLease(taken, 'holder-b');
    expect((await store.get('quiqup', 'default'))!.lease).toBeUndefined();
  });

  it('a holder paused past its lease cannot overwrite the newer write', async () => {
    const store = local.broker.store;
    const read = (await store.get('quiqup', 'default'))!;
    const now = local.clock.t;
    const leasedByA = await store.acquireLease(read, 'holder-a', now, 30_000);
    // A stalls; its lease lapses; B takes over, renews and writes.
    const leasedByB = await store.acquireLease(read, 'holder-b', now + 31_000, 30_000);
    await expect(
      store.saveTokens(leasedByA, tokens(20), now + 32_000, { holder: 'holder-a' }),
    ).rejects.toBeInstanceOf(VersionConflictError); // B still holds it
    await store.saveTokens(leasedByB, tokens(21), now + 33_000, { holder: 'holder-b' });
    await expect(
      store.saveTokens(leasedByA, tokens(22), now + 34_000, { holder: 'holder-a' }),
    ).rejects.toBeInstanceOf(VersionConflictError); // B wrote since
    await expect(
      store.recordFailure(
        leasedByA,
        'holder-a',
        { error: { code: 'x', message: 'y' }, needsReauth: true },
        now + 35_000,
      ),
    ).rejects.toBeInstanceOf(VersionConflictError);
    const final = (await store.get('quiqup', 'default'))!;
    expect(final.tokens.accessToken).toBe('access-21');
    expect(final.status).toBe('active');
  });

  it("a caller that finds a live lease waits and returns the holder's new token", async () => {
    const store = local.broker.store;
    const provider = local.broker.providers.get('quiqup')!;
    const read = (await store.get('quiqup', 'default'))!;
    const expired = await store.saveTokens(
      read,
      { ...tokens(30), expiresAt: local.clock.t - 1 },
      local.clock.t,
    );
    const leased = await store.acquireLease(expired, 'other-container', local.clock.t, 30_000);
    const before = local.sandboxes.quiqup.callCount('token');
    const waiting = refreshConnection(
      {
        store,
        events: local.broker.events,
        now: local.clock.now,
        logger,
        leaseMs: 30_000,
        waitMs: 5_000,
      },
      provider,
      'default',
      { minValidityMs: 60_000, force: false },
    );
    await new Promise((done) => setTimeout(done, 150));
    await store.saveTokens(
      leased,
      { ...tokens(31), expiresAt: local.clock.t + 3_600_000 },
      local.clock.t,
      { holder: 'other-container' },
    );
    const result = await waiting;
    expect(result.connection.tokens.accessToken).toBe('access-31');
    expect(result.outcome).toBe('fresh');
    expect(local.sandboxes.quiqup.callCount('token')).toBe(before); // the waiter made no provider call
  });
});
