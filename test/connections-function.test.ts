import { GetCommand, DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isAllowedReturnTo } from '../shared/connect/return-to.ts';
import { connectionPk } from '../shared/store/table.ts';
import { startTestBroker, type TestBroker } from './helpers/local.ts';

// The `connections` function over the real Invoke API, on the embedded store. Connections are
// created through the real token path (Quidkey client credentials) or the real store.

let local: TestBroker;
beforeAll(async () => {
  local = await startTestBroker();
});
afterAll(async () => local?.close());

const connections = (payload: unknown) => local.invokeFunction('connections', payload);

describe('connections function: get, list, delete', () => {
  it('gets a connection with status and times, never a token', async () => {
    const token = await local.invoke({ provider: 'quidkey' });
    expect(token.ok).toBe(true);
    const answer = await connections({
      action: 'get',
      provider: 'quidkey',
      connectionId: 'default',
    });
    expect(answer).toMatchObject({
      ok: true,
      connection: {
        provider: 'quidkey',
        connectionId: 'default',
        status: 'active',
        accessTokenExpiresAt: token.expiresAt,
        lastError: null,
      },
    });
    const text = JSON.stringify(answer);
    expect(text).not.toContain(token.accessToken as string);
    expect(text).not.toContain('tokens');
  });

  it('does not show a first mint still under way (its claim) as a connection', async () => {
    const now = local.clock.now();
    await local.broker.store.claim('quiqup', 'claimed-only', 'some-holder', now, 8_000);
    expect(
      await connections({ action: 'get', provider: 'quiqup', connectionId: 'claimed-only' }),
    ).toMatchObject({ ok: false, error: { code: 'not_found' } });
    const page = (await connections({ action: 'list', provider: 'quiqup', limit: 50 })) as {
      connections: { connectionId: string }[];
    };
    expect(page.connections.map((c) => c.connectionId)).not.toContain('claimed-only');
    await connections({ action: 'delete', provider: 'quiqup', connectionId: 'claimed-only' });
  });

  it('lists one provider page by page through the index, without a Scan', async () => {
    const now = local.clock.now();
    for (let i = 0; i < 7; i += 1) {
      await local.broker.store.create(
        'quiqup',
        `user-${i}`,
        { accessToken: `secret-access-${i}`, tokenType: 'Bearer', expiresAt: now + 3_600_000 },
        now,
      );
    }
    const seen: string[] = [];
    let cursor: string | undefined;
    let pages = 0;
    do {
      const page = await connections({
        action: 'list',
        provider: 'quiqup',
        limit: 3,
        ...(cursor ? { cursor } : {}),
      });
      expect(page.ok).toBe(true);
      expect(JSON.stringify(page)).not.toContain('secret-access');
      seen.push(...(page.connections as { connectionId: string }[]).map((c) => c.connectionId));
      cursor = page.nextCursor as string | undefined;
      pages += 1;
    } while (cursor && pages < 10);
    expect(seen.filter((id) => id.startsWith('user-')).sort()).toEqual(
      Array.from({ length: 7 }, (_, i) => `user-${i}`),
    );
    expect(pages).toBeGreaterThanOrEqual(3);
    // Other providers' connections are not in this provider's listing.
    expect(seen).not.toContain('default');
  });

  it('refuses a cursor it did not hand out (or one for another provider)', async () => {
    const page = await connections({ action: 'list', provider: 'quiqup', limit: 1 });
    const forged = await connections({
      action: 'list',
      provider: 'quidkey',
      cursor: page.nextCursor,
    });
    expect(forged).toMatchObject({ ok: false, error: { code: 'invalid_request' } });
    const garbage = await connections({ action: 'list', provider: 'quiqup', cursor: '!!!' });
    expect(garbage).toMatchObject({ ok: false, error: { code: 'invalid_request' } });
  });

  // Issue 13 item 1: keys DynamoDB itself would refuse (ValidationException → internal_error).
  const cursorOf = (key: unknown) => Buffer.from(JSON.stringify(key)).toString('base64url');
  it.each([
    ['empty key values', { pk: '', provider: 'quiqup', connectionId: '' }],
    ['an oversized pk', { pk: 'x'.repeat(3000), provider: 'quiqup', connectionId: 'a' }],
    [
      'an oversized connection id',
      {
        pk: `connection#quiqup#${'a'.repeat(1100)}`,
        provider: 'quiqup',
        connectionId: 'a'.repeat(1100),
      },
    ],
    [
      'a pk of another connection',
      { pk: 'connection#quiqup#b', provider: 'quiqup', connectionId: 'a' },
    ],
    ['a pk of another item type', { pk: 'session#abc', provider: 'quiqup', connectionId: 'a' }],
    ['a number for a key', { pk: 1, provider: 'quiqup', connectionId: 'a' }],
    [
      'an extra attribute',
      { pk: 'connection#quiqup#a', provider: 'quiqup', connectionId: 'a', x: 1 },
    ],
    ['an array', ['connection#quiqup#a', 'quiqup', 'a']],
    ['null', null],
  ])('refuses a cursor that decodes to %s with invalid_request', async (_what, key) => {
    const answer = await connections({ action: 'list', provider: 'quiqup', cursor: cursorOf(key) });
    expect(answer).toMatchObject({
      ok: false,
      error: { code: 'invalid_request', message: expect.stringMatching(/cursor/) },
    });
  });

  it('still takes a cursor of the same shape it hands out', async () => {
    const key = { pk: 'connection#quiqup#user-0', provider: 'quiqup', connectionId: 'user-0' };
    const answer = await connections({ action: 'list', provider: 'quiqup', cursor: cursorOf(key) });
    expect(answer.ok).toBe(true);
  });

  it('deletes a connection: its item and ciphertext are gone, a lifecycle event says so', async () => {
    const now = local.clock.now();
    await local.broker.store.create(
      'quiqup',
      'to-delete',
      { accessToken: 'doomed', tokenType: 'Bearer', expiresAt: now + 3_600_000 },
      now,
    );
    const deleted = await connections({
      action: 'delete',
      provider: 'quiqup',
      connectionId: 'to-delete',
    });
    expect(deleted).toEqual({ ok: true, deleted: true });
    const raw = await DynamoDBDocumentClient.from(local.dynamo).send(
      new GetCommand({
        TableName: local.tableName,
        Key: { pk: connectionPk('quiqup', 'to-delete') },
        ConsistentRead: true,
      }),
    );
    expect(raw.Item).toBeUndefined();
    expect(
      await connections({ action: 'get', provider: 'quiqup', connectionId: 'to-delete' }),
    ).toMatchObject({ ok: false, error: { code: 'not_found' } });
    expect(
      await connections({ action: 'delete', provider: 'quiqup', connectionId: 'to-delete' }),
    ).toMatchObject({ ok: false, error: { code: 'not_found' } });
    const events = (await (await fetch(`${local.url}/local/events`)).json()) as {
      type: string;
      connectionId: string;
    }[];
    expect(events).toContainEqual(
      expect.objectContaining({ type: 'Connection Deleted', connectionId: 'to-delete' }),
    );
  });
});

describe('connections function: bad input', () => {
  it.each([
    [{}, 'invalid_request', /action/],
    [{ action: 'explode', provider: 'quiqup' }, 'invalid_request', /action/],
    [{ action: 'get', provider: 'quiqup' }, 'invalid_request', /connectionId/],
    [{ action: 'get', provider: 'nope', connectionId: 'x' }, 'unknown_provider', /nope/],
    [{ action: 'list', provider: 'quiqup', limit: 1000 }, 'invalid_request', /limit/],
    [
      { action: 'createConnectSession', provider: 'quidkey', connectionId: 'x' },
      'invalid_request',
      /client credentials/,
    ],
  ])('%j → %s', async (payload, code, message) => {
    const answer = await connections(payload);
    expect(answer).toMatchObject({ ok: false, error: { code } });
    expect((answer.error as { message: string }).message).toMatch(message);
  });

  it('answers a payload that is not an object with invalid_request', async () => {
    expect(await connections('get')).toMatchObject({
      ok: false,
      error: { code: 'invalid_request' },
    });
  });
});

describe('returnTo allowlist', () => {
  const allowed = ['https://app.example.com/settings/', 'http://localhost:3000'];
  it.each([
    ['https://app.example.com/settings/', true],
    ['https://app.example.com/settings/integrations?tab=1', true],
    ['http://localhost:3000/', true],
    ['http://localhost:3000/anything', true],
    ['https://app.example.com/other', false],
    ['https://app.example.com.evil.net/settings/', false],
    ['http://localhost:30001/', false],
    ['https://app.example.com@evil.net/settings/', false],
    ['https://user:pw@app.example.com/settings/', false],
    ['http://app.example.com/settings/', false],
    ['javascript:alert(1)//https://app.example.com/settings/', false],
    ['/settings/', false],
  ])('%s → %s', (url, expected) => {
    expect(isAllowedReturnTo(url, allowed)).toBe(expected);
  });
});
