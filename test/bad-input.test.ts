import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../shared/config.ts';
import { startTestBroker, type TestBroker } from './helpers/local.ts';

// Bad input found by a generated-case run against `npm start` (issue 13), one reproduction each,
// over real HTTP against the offline runtime. test/fuzz.test.ts generates many more.

let local: TestBroker;
beforeAll(async () => {
  local = await startTestBroker({
    config: parseConfig({
      allowedReturnTo: ['http://localhost/app/'],
      providers: {
        quiqup: { catalog: 'quiqup', environment: 'sandbox' },
        quicko: { catalog: 'quicko', environment: 'sandbox' },
        quipt: { catalog: 'quipt', environment: 'sandbox' },
      },
    }),
  });
});
afterAll(async () => local?.close());

describe('connect routes invoked directly with an event that is not an HTTP API event', () => {
  const events: [string, unknown][] = [
    ['null', null],
    ['an empty object', {}],
    ['a string', 'GET /connect/quicko'],
    ['an array', []],
    ['a REST API (v1) event', { httpMethod: 'GET', path: '/connect/quicko', pathParameters: {} }],
    ['an EventBridge event', { 'detail-type': 'Scheduled Event', source: 'aws.events' }],
    [
      'cookies that are not a list',
      { version: '2.0', requestContext: { http: { method: 'GET' } }, cookies: 'flow=1' },
    ],
    [
      'a query value that is not a string',
      {
        version: '2.0',
        requestContext: { http: { method: 'GET' } },
        pathParameters: { provider: 'quicko' },
        queryStringParameters: { session: 5 },
      },
    ],
  ];
  for (const name of ['connect-start', 'connect-callback']) {
    it.each(events)(
      `${name}: %s → a 400 page saying what it takes, not internal_error`,
      async (_what, event) => {
        const before = await local.itemCount();
        const answer = await local.invokeFunction(name, event);
        expect(answer.statusCode).toBe(400);
        expect(answer.body).toMatch(/not an API Gateway HTTP API event/);
        expect(answer.body).not.toMatch(/went wrong|see its logs/);
        expect(await local.itemCount()).toBe(before);
      },
    );
  }
});

// Issue 13 item 5: the URL parser resolves `..`, `%2e%2e` and `\`, but leaves these in the path
// for a server (or a proxy in front of it) that decodes once more to climb out of the prefix.
const dotSegments = [
  '..%2Fadmin',
  '..%2fadmin',
  '%2e%2e%2fadmin',
  '.%2E/admin',
  '..;/admin',
  '..;jsessionid=1/admin',
  '%2e%2e;/admin',
  '..%5Cadmin',
  '..%5cadmin',
  '%252e%252e%252fadmin',
  '%25252e%25252e%25252fadmin',
  '..%252fadmin',
  'x/..%2F..%2Fadmin',
  '%c0%ae%c0%ae/admin',
  '.%00./admin',
];

describe('encoded dot-segments under an allowed prefix', () => {
  it.each(dotSegments)('refuses returnTo http://localhost/app/%s', async (tail) => {
    const before = await local.itemCount();
    const answer = await local.invokeFunction('connections', {
      action: 'createConnectSession',
      provider: 'quicko',
      connectionId: 'dots',
      returnTo: `http://localhost/app/${tail}`,
    });
    expect(answer).toMatchObject({
      ok: false,
      error: { code: 'invalid_request', message: expect.stringMatching(/returnTo/) },
    });
    expect(await local.itemCount()).toBe(before);
  });

  it.each(dotSegments)('refuses sign.url <quipt API>/%s', async (tail) => {
    const apiBase = `${local.url}/sandbox/quipt/v2`;
    const consumerKey = [...local.sandboxes.quipt.clients.keys()][0]!;
    const credentials = local.sandboxes.quipt.issueAccessCredentials(consumerKey);
    const connectionId = `dots-${dotSegments.indexOf(tail)}`;
    await local.broker.store.create(
      'quipt',
      connectionId,
      { accessToken: credentials.token, tokenSecret: credentials.secret, tokenType: 'OAuth' },
      local.clock.now(),
    );
    const answer = await local.invoke({
      provider: 'quipt',
      connectionId,
      sign: { method: 'GET', url: `${apiBase}/${tail}` },
    });
    expect(answer).toMatchObject({
      ok: false,
      error: { code: 'invalid_request', message: expect.stringMatching(/sign\.url/) },
    });
    // The control: the same connection signs a request under the prefix.
    const control = await local.invoke({
      provider: 'quipt',
      connectionId,
      sign: { method: 'GET', url: `${apiBase}/me` },
    });
    expect(control).toMatchObject({ ok: true, authorization: expect.stringMatching(/^OAuth /) });
  });

  it.each([
    'http://localhost/app/settings',
    'http://localhost/app/a%2Fb', // an encoded slash inside a segment climbs nowhere
    'http://localhost/app/v1.2/..x/x..',
    'http://localhost/app/?next=../admin', // the query is not the path
  ])('still accepts returnTo %s', async (returnTo) => {
    const answer = await local.invokeFunction('connections', {
      action: 'createConnectSession',
      provider: 'quicko',
      connectionId: 'dots',
      returnTo,
    });
    expect(answer).toMatchObject({ ok: true });
  });
});
