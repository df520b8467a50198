import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { startLocalBroker, type LocalBroker } from '../../infra/local/local-broker.ts';
import { TokenBrokerClient, TokenBrokerError } from '../../shared/client/index.ts';

/**
 * The client against the real offline runtime: the Lambda Invoke API over HTTP, the token handler,
 * the embedded store and the sandbox Quidkey. Invocations are counted where they arrive.
 */
describe('TokenBrokerClient against the offline runtime', () => {
  let local: LocalBroker;
  let dataDir: string;
  let invocations: unknown[];

  beforeAll(async () => {
    // The client builds its own LambdaClient: give the default credential chain dummy keys.
    vi.stubEnv('AWS_ACCESS_KEY_ID', 'local');
    vi.stubEnv('AWS_SECRET_ACCESS_KEY', 'local');
    dataDir = mkdtempSync(join(tmpdir(), 'broker-client-test-'));
    local = await startLocalBroker({ port: 0, dataDir, persist: false });
    const tokenHandler = local.functions.token!;
    local.functions.token = (event, context) => {
      invocations.push(event);
      return tokenHandler(event, context);
    };
  });

  afterAll(async () => {
    await local?.close();
    rmSync(dataDir, { recursive: true, force: true });
    vi.unstubAllEnvs();
  });

  beforeEach(() => {
    invocations = [];
  });

  const newClient = () => new TokenBrokerClient({ endpoint: local.url, region: 'us-east-1' });

  it('serves a quidkey token that the sandbox API accepts, then serves it from cache', async () => {
    const client = newClient();
    const token = await client.getToken({ provider: 'quidkey' });
    expect(token).toMatchObject({
      provider: 'quidkey',
      connectionId: 'default',
      tokenType: 'Bearer',
    });
    expect(token.authorization).toBe(`Bearer ${token.accessToken}`);
    expect(Date.parse(token.expiresAt!)).toBeGreaterThan(Date.now() + 60_000);

    const me = await fetch(`${local.url}/sandbox/quidkey/api/v1/me`, {
      headers: { authorization: token.authorization },
    });
    expect(me.status).toBe(200);
    expect(invocations).toHaveLength(1);
    expect(local.sandboxes.quidkey.callCount('token')).toBe(1);

    const again = await client.getToken({ provider: 'quidkey' });
    expect(again).toEqual(token);
    expect(invocations).toHaveLength(1);
    expect(local.sandboxes.quidkey.callCount('token')).toBe(1);
  });

  it('shares one invoke among concurrent callers for the same connection', async () => {
    const client = newClient();
    const tokens = await Promise.all(
      Array.from({ length: 10 }, () => client.getToken({ provider: 'quidkey' })),
    );
    expect(invocations).toHaveLength(1);
    expect(new Set(tokens.map((t) => t.accessToken)).size).toBe(1);
  });

  it('asks the broker again when the cached token is not valid long enough', async () => {
    const client = newClient();
    const token = await client.getToken({ provider: 'quidkey' });
    const secondsLeft = (Date.parse(token.expiresAt!) - Date.now()) / 1000;
    await client.getToken({ provider: 'quidkey', minValiditySeconds: Math.ceil(secondsLeft) + 60 });
    expect(invocations).toHaveLength(2);
    expect(invocations[1]).toMatchObject({ minValiditySeconds: Math.ceil(secondsLeft) + 60 });
  });

  it('renews through the broker on forceRefresh and caches the new token', async () => {
    const client = newClient();
    const first = await client.getToken({ provider: 'quidkey' });
    const renewed = await client.getToken({ provider: 'quidkey', forceRefresh: true });
    expect(invocations).toHaveLength(2);
    expect(invocations[1]).toMatchObject({ provider: 'quidkey', forceRefresh: true });
    expect(renewed.accessToken).not.toBe(first.accessToken);
    expect(await client.getToken({ provider: 'quidkey' })).toEqual(renewed);
    expect(invocations).toHaveLength(2);
  });

  it('throws the broker’s refusal as a TokenBrokerError with its code', async () => {
    const client = newClient();
    const error = await client.getToken({ provider: 'nope' }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TokenBrokerError);
    expect(error).toMatchObject({
      code: 'unknown_provider',
      message: expect.stringContaining('nope'),
    });
    // A refusal is not cached: the next call asks again.
    await client.getToken({ provider: 'nope' }).catch(() => undefined);
    expect(invocations).toHaveLength(2);
  });

  it('reports an unhandled function error as internal_error, without its details', async () => {
    local.functions.crash = async () => {
      throw new Error('boom with sbx_quidkey_secret-looking detail');
    };
    const client = new TokenBrokerClient({
      endpoint: local.url,
      region: 'us-east-1',
      functionName: 'crash',
    });
    const error = await client.getToken({ provider: 'quidkey' }).catch((e: unknown) => e);
    expect(error).toMatchObject({ name: 'TokenBrokerError', code: 'internal_error' });
    expect((error as Error).message).not.toContain('boom');
  });

  it('reports a function it cannot invoke as invoke_failed', async () => {
    const client = new TokenBrokerClient({
      endpoint: local.url,
      region: 'us-east-1',
      functionName: 'missing',
    });
    await expect(client.getToken({ provider: 'quidkey' })).rejects.toMatchObject({
      code: 'invoke_failed',
      message: expect.stringContaining('ResourceNotFoundException'),
    });
  });
});

describe('TokenBrokerClient options', () => {
  const regionOf = (client: TokenBrokerClient) =>
    (
      client as unknown as { lambda: { config: { region: () => Promise<string> } } }
    ).lambda.config.region();

  it('calls Lambda in the region of a function ARN, unless told otherwise', async () => {
    const arn = 'arn:aws:lambda:eu-west-1:123456789012:function:oauth-token-broker-prod-token';
    expect(await regionOf(new TokenBrokerClient({ functionName: arn }))).toBe('eu-west-1');
    expect(await regionOf(new TokenBrokerClient({ functionName: arn, region: 'us-east-2' }))).toBe(
      'us-east-2',
    );
  });
});
