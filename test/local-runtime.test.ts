import { mkdtempSync, rmSync } from 'node:fs';
import { connect, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DynamoDBClient, ScanCommand } from '@aws-sdk/client-dynamodb';
import { InvokeCommand, LambdaClient } from '@aws-sdk/client-lambda';
import type { APIGatewayProxyEventV2 } from 'aws-lambda';
import dynalite from 'dynalite';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { matchInvokePath } from '../infra/local/lambda-invoke-api.ts';
import { startTestBroker, type TestBroker } from './helpers/local.ts';

describe('offline runtime: Lambda Invoke API', () => {
  let local: TestBroker;
  beforeAll(async () => {
    local = await startTestBroker();
  });
  afterAll(() => local.close());

  it('accepts names, qualified names and ARNs as the Lambda service does', () => {
    expect(matchInvokePath('/2015-03-31/functions/token/invocations')).toBe('token');
    expect(matchInvokePath('/2015-03-31/functions/token%3A%24LATEST/invocations')).toBe('token');
    expect(
      matchInvokePath(
        `/2015-03-31/functions/${encodeURIComponent('arn:aws:lambda:eu-west-1:123456789012:function:token')}/invocations`,
      ),
    ).toBe('token');
    expect(matchInvokePath('/2015-03-31/functions/token')).toBeUndefined();
  });

  it('answers an unknown function as ResourceNotFoundException, through the real SDK', async () => {
    await expect(
      local.lambda.send(new InvokeCommand({ FunctionName: 'nope', Payload: Buffer.from('{}') })),
    ).rejects.toMatchObject({
      name: 'ResourceNotFoundException',
    });
  });

  // Issue 13 item 3: names were looked up on a plain object (`constructor` echoed the payload).
  it.each(['constructor', 'hasOwnProperty', '__proto__', 'toString', 'valueOf'])(
    'answers %s, a name every object has, as ResourceNotFoundException',
    async (name) => {
      const response = await fetch(`${local.url}/2015-03-31/functions/${name}/invocations`, {
        method: 'POST',
        body: '{"provider":"quiqup"}',
      });
      expect(response.status).toBe(404);
      expect(response.headers.get('x-amzn-errortype')).toBe('ResourceNotFoundException');
      expect(await response.text()).not.toContain('quiqup');
      await expect(
        local.lambda.send(new InvokeCommand({ FunctionName: name, Payload: Buffer.from('{}') })),
      ).rejects.toMatchObject({ name: 'ResourceNotFoundException' });
    },
  );

  it.each([
    ['GET', '/connect/%ZZ'],
    ['GET', '/callback/%E0%A4%A'],
    ['GET', '/%'],
    ['POST', '/2015-03-31/functions/%ZZ/invocations'],
  ])('answers malformed %%-encoding in the path (%s %s) with a 400', async (method, path) => {
    const response = await fetch(`${local.url}${path}`, {
      method,
      ...(method === 'POST' ? { body: '{}' } : {}),
    });
    expect(response.status).toBe(400);
    expect(await response.json()).toEqual({
      message: 'Bad Request: the path is not valid percent-encoding.',
    });
  });

  it('answers a sandbox name every object has (/sandbox/constructor/…) with a 404', async () => {
    expect((await fetch(`${local.url}/sandbox/constructor/x`)).status).toBe(404);
  });

  /** Sends raw HTTP/1.1 on one socket; resolves with all it read once the server closes it. */
  const rawExchange = (writes: (string | Buffer)[]) =>
    new Promise<{ text: string; closedByServer: boolean }>((done, fail) => {
      const socket = connect(Number(new URL(local.url).port), '127.0.0.1');
      let text = '';
      socket.on('data', (data) => (text += data.toString('latin1')));
      socket.on('error', () => {}); // a reset while we are still writing is the server closing
      socket.on('close', () => done({ text, closedByServer: true }));
      const giveUp = setTimeout(() => {
        socket.destroy();
        fail(new Error(`the server kept the connection open; read: ${text.slice(0, 200)}`));
      }, 10_000);
      socket.on('close', () => clearTimeout(giveUp));
      for (const chunk of writes) socket.write(chunk);
    });

  it('answers a body over the limit with 413 and closes the connection (the next request would hang)', async () => {
    const head = (length: number) =>
      `POST /2015-03-31/functions/token/invocations HTTP/1.1\r\nHost: localhost\r\nContent-Length: ${length}\r\n\r\n`;
    const next = 'GET /local/events HTTP/1.1\r\nHost: localhost\r\n\r\n';
    // Declared over the limit: refused without reading the body.
    const declared = await rawExchange([head(7 * 1024 * 1024), 'x'.repeat(1000), next]);
    expect(declared.text).toMatch(/^HTTP\/1\.1 413 /);
    expect(declared.text.toLowerCase()).toContain('connection: close');
    expect(declared.text.match(/HTTP\/1\.1 /g)).toHaveLength(1);
    // Streamed (chunked) past the limit.
    const chunk = Buffer.alloc(1024 * 1024, 'x');
    const chunked = await rawExchange([
      'POST /2015-03-31/functions/token/invocations HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n',
      ...Array.from({ length: 7 }, () =>
        Buffer.concat([
          Buffer.from(`${chunk.length.toString(16)}\r\n`),
          chunk,
          Buffer.from('\r\n'),
        ]),
      ),
      '0\r\n\r\n',
      next,
    ]);
    // Closed by the server, never kept open for the next request. While the client is still
    // sending its body, the close can reach it as a reset that drops the 413 it had not read
    // yet (the kernel resets a socket closed with unread data): so no answer, or the 413 alone.
    expect(chunked.closedByServer).toBe(true);
    expect(chunked.text).toMatch(/^(HTTP\/1\.1 413 [^]*)?$/);
    expect(chunked.text.match(/HTTP\/1\.1 /g)?.length ?? 0).toBeLessThanOrEqual(1);
    // The runtime still answers on a new connection.
    expect((await fetch(`${local.url}/local/events`)).status).toBe(200);
  });

  it('answers a payload that is not JSON as InvalidRequestContentException', async () => {
    await expect(
      local.lambda.send(
        new InvokeCommand({ FunctionName: 'token', Payload: Buffer.from('{nope') }),
      ),
    ).rejects.toMatchObject({
      name: 'InvalidRequestContentException',
    });
  });

  it('refuses invocations from a browser (an Origin header): a web page cannot fetch tokens', async () => {
    const response = await fetch(`${local.url}/2015-03-31/functions/token/invocations`, {
      method: 'POST',
      headers: { origin: 'https://evil.example', 'content-type': 'text/plain' },
      body: JSON.stringify({ provider: 'quidkey' }),
    });
    expect(response.status).toBe(403);
    expect(await response.text()).not.toMatch(/accessToken/);
  });

  it('takes Event invocations (202) and DryRun (204)', async () => {
    const event = await local.lambda.send(
      new InvokeCommand({
        FunctionName: 'token',
        InvocationType: 'Event',
        Payload: Buffer.from('{"provider":"quiqup"}'),
      }),
    );
    expect(event.StatusCode).toBe(202);
    // The invocation really ran, in the background: the connection appears.
    for (let i = 0; i < 50 && !(await local.broker.store.get('quiqup', 'default')); i += 1) {
      await new Promise((done) => setTimeout(done, 20));
    }
    expect(await local.broker.store.get('quiqup', 'default')).toBeDefined();
    const dry = await local.lambda.send(
      new InvokeCommand({ FunctionName: 'token', InvocationType: 'DryRun' }),
    );
    expect(dry.StatusCode).toBe(204);
  });

  it('reports a handler that throws as FunctionError Unhandled', async () => {
    local.functions.explode = async () => {
      throw new TypeError('boom');
    };
    const out = await local.lambda.send(new InvokeCommand({ FunctionName: 'explode' }));
    expect(out.FunctionError).toBe('Unhandled');
    expect(JSON.parse(Buffer.from(out.Payload!).toString())).toEqual({
      errorType: 'TypeError',
      errorMessage: 'boom',
    });
  });

  it('serves HTTP API routes as payload format 2.0 events, cookies and redirects included', async () => {
    let seen: APIGatewayProxyEventV2 | undefined;
    local.functions.echo = async (event) => {
      seen = event as APIGatewayProxyEventV2;
      return {
        statusCode: 302,
        headers: { location: 'https://example.test/done' },
        cookies: ['a=1; HttpOnly', 'b=2'],
      };
    };
    local.routes.push({ method: 'GET', path: '/echo/{provider}', functionName: 'echo' });
    const response = await fetch(`${local.url}/echo/quipt?session=s1&x=1&x=2`, {
      redirect: 'manual',
      headers: { cookie: 'flow=abc; other=1' },
    });
    expect(response.status).toBe(302);
    expect(response.headers.get('location')).toBe('https://example.test/done');
    expect(response.headers.getSetCookie()).toEqual(['a=1; HttpOnly', 'b=2']);
    expect(seen).toMatchObject({
      version: '2.0',
      routeKey: 'GET /echo/{provider}',
      rawPath: '/echo/quipt',
      rawQueryString: 'session=s1&x=1&x=2',
      pathParameters: { provider: 'quipt' },
      queryStringParameters: { session: 's1', x: '1,2' },
      cookies: ['flow=abc', 'other=1'],
      requestContext: { http: { method: 'GET', path: '/echo/quipt' } },
    });
    expect(seen!.headers.cookie).toBeUndefined(); // API Gateway moves cookies out of the headers
    expect((await fetch(`${local.url}/echo`)).status).toBe(404);
  });
});

describe('offline runtime: persistence', () => {
  it('keeps connections, the key and the secrets across a restart', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'broker-persist-'));
    try {
      const first = await startTestBroker({ dataDir, persist: true });
      const before = await first.invoke({ provider: 'quidkey' });
      await first.close();

      const second = await startTestBroker({ dataDir, persist: true });
      try {
        second.clock.t = first.clock.t;
        const after = await second.invoke({ provider: 'quidkey' });
        expect(after.accessToken).toBe(before.accessToken);
        expect(second.sandboxes.quidkey.callCount()).toBe(0); // served from the store, decrypted with the kept key
      } finally {
        await second.close();
      }
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });

  it('works with the standard SDK client pointed at it (as the README shows)', async () => {
    const local = await startTestBroker();
    try {
      const client = new LambdaClient({
        endpoint: local.url,
        region: 'eu-west-1',
        credentials: { accessKeyId: 'x', secretAccessKey: 'x' },
      });
      const out = await client.send(
        new InvokeCommand({
          FunctionName: 'token',
          Payload: JSON.stringify({ provider: 'quiqup' }),
        }),
      );
      const answer = JSON.parse(new TextDecoder().decode(out.Payload));
      expect(answer).toMatchObject({ ok: true, provider: 'quiqup', tokenType: 'Bearer' });
      client.destroy();
    } finally {
      await local.close();
    }
  });

  it('uses a store of the caller’s own (storeEndpoint), creates its table there and leaves it running', async () => {
    const store = dynalite({ createTableMs: 0 });
    await new Promise<void>((done) => store.listen(0, '127.0.0.1', done));
    const endpoint = `http://127.0.0.1:${(store.address() as AddressInfo).port}`;
    const dynamo = new DynamoDBClient({
      endpoint,
      region: 'local',
      credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
    });
    try {
      const local = await startTestBroker({ storeEndpoint: endpoint });
      const answer = await local.invoke({ provider: 'quiqup' });
      expect(answer).toMatchObject({ ok: true, provider: 'quiqup' });
      await local.close();
      // The connection is in that store, which still answers after the runtime closed.
      const { Items } = await dynamo.send(new ScanCommand({ TableName: local.tableName }));
      expect(Items?.map((item) => item.provider?.S)).toContain('quiqup');
    } finally {
      dynamo.destroy();
      await new Promise<void>((done) => store.close(() => done()));
    }
  });
});
