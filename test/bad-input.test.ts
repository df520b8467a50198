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
        quiqup: { kind: 'quiqup', environment: 'sandbox' },
        quicko: { kind: 'quicko', environment: 'sandbox' },
        quipt: { kind: 'quipt', environment: 'sandbox' },
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
