import { execFile } from 'node:child_process';
import { createSocket, type Socket } from 'node:dgram';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { build } from 'esbuild';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { configFileName, handlerBuildOptions } from '../infra/broker-function.ts';
import { startTestBroker, type TestBroker } from './helpers/local.ts';

// The token function's bundle, built as the stack builds it (aliases and all), run in a process
// of its own with the environment Lambda gives a traced function: the X-Ray documents it sends
// to the daemon's UDP address (here a socket of this test) are what a deployment traces.

interface XRayDocument {
  name: string;
  trace_id?: string;
  namespace?: string;
  annotations?: Record<string, unknown>;
  aws?: { operation?: string };
  http?: { request?: { url?: string }; response?: { status?: number } };
  subsegments?: XRayDocument[];
}

const traceRoot = '1-67891233-abcdef012345678912345678';
let local: TestBroker;
let bundleDir: string;
let daemon: Socket;
const received: XRayDocument[] = [];

beforeAll(async () => {
  local = await startTestBroker({ realTime: true });
  bundleDir = mkdtempSync(join(tmpdir(), 'broker-bundle-'));
  await build(handlerBuildOptions(resolve('functions/token.ts'), join(bundleDir, 'index.mjs')));
  // The configuration beside it, as the TokenBroker construct ships it.
  writeFileSync(join(bundleDir, configFileName), JSON.stringify(local.broker.config));
  daemon = createSocket('udp4');
  daemon.on('message', (message) => {
    // Each datagram: the header line, then one segment or subsegment document.
    const [, body] = message.toString('utf8').split('\n');
    if (body) received.push(JSON.parse(body) as XRayDocument);
  });
  await new Promise<void>((done) => daemon.bind(0, '127.0.0.1', done));
}, 60_000);

afterAll(async () => {
  daemon?.close();
  if (bundleDir) rmSync(bundleDir, { recursive: true, force: true });
  await local?.close();
});

function flatten(documents: XRayDocument[]): XRayDocument[] {
  return documents.flatMap((document) => [document, ...flatten(document.subsegments ?? [])]);
}

describe('the token bundle, traced as deployed', () => {
  it('sends the handler, every AWS SDK call and the provider call to X-Ray', async () => {
    const endpoint = await local.dynamo.config.endpoint!();
    const script = `
      const { handler } = await import(${JSON.stringify(pathToFileURL(join(bundleDir, 'index.mjs')).href)});
      const answer = await handler({ provider: 'quiqup' }, {
        functionName: 'token', functionVersion: '$LATEST', memoryLimitInMB: '256',
        invokedFunctionArn: 'arn:aws:lambda:us-east-1:123456789012:function:token',
        awsRequestId: 'c6af9ac6-7b61-11e6-9a41-93e812345678', getRemainingTimeInMillis: () => 30000,
      });
      // Lets the X-Ray SDK's datagrams leave before the process ends.
      await new Promise((done) => setTimeout(done, 200));
      console.log('ANSWER ' + JSON.stringify({ ok: answer.ok, tokenType: answer.tokenType }));
    `;
    const { stdout } = await promisify(execFile)(
      process.execPath,
      ['--enable-source-maps', '--input-type=module', '-e', script],
      {
        timeout: 60_000,
        encoding: 'utf8',
        env: {
          PATH: process.env.PATH,
          // What Lambda sets for a function with active tracing.
          AWS_EXECUTION_ENV: 'AWS_Lambda_nodejs24.x',
          AWS_LAMBDA_FUNCTION_NAME: 'token',
          AWS_LAMBDA_INITIALIZATION_TYPE: 'on-demand',
          LAMBDA_TASK_ROOT: bundleDir,
          _HANDLER: 'index.handler',
          _X_AMZN_TRACE_ID: `Root=${traceRoot};Parent=53995c3f42cd8ad8;Sampled=1`,
          AWS_XRAY_DAEMON_ADDRESS: `127.0.0.1:${daemon.address().port}`,
          AWS_XRAY_CONTEXT_MISSING: 'LOG_ERROR',
          POWERTOOLS_SERVICE_NAME: 'oauth-token-broker',
          POWERTOOLS_METRICS_NAMESPACE: 'bundle-test',
          POWERTOOLS_TRACE_ENABLED: 'true',
          POWERTOOLS_LOG_LEVEL: 'ERROR',
          AWS_REGION: 'us-east-1',
          AWS_ACCESS_KEY_ID: 'local',
          AWS_SECRET_ACCESS_KEY: 'local',
          // The offline runtime's store, key, secrets and sandbox providers.
          BROKER_MODE: 'local',
          AWS_ENDPOINT_URL_DYNAMODB: `${endpoint.protocol}//${endpoint.hostname}:${endpoint.port}`,
          BROKER_TABLE_NAME: local.tableName,
          BROKER_LOCAL_KEY_FILE: join(local.dataDir, 'local-master.key'),
          BROKER_SECRETS_FILE: join(local.dataDir, 'secrets.json'),
          BROKER_SANDBOX_URL: `${local.url}/sandbox`,
        },
      },
    );
    const answer = /^ANSWER (.*)$/m.exec(stdout)?.[1];
    expect(JSON.parse(answer ?? 'null')).toEqual({ ok: true, tokenType: 'Bearer' });
    expect(local.sandboxes.quiqup.callCount('token')).toBe(1);

    const documents = flatten(received);
    expect(documents.every((document) => document.trace_id === traceRoot)).toBe(true);
    const handler = documents.find((document) => document.name === '## index.handler');
    expect(handler?.annotations).toMatchObject({ ColdStart: true, Service: 'oauth-token-broker' });
    // The first use: read, claim, write the minted tokens (the table's own calls, by operation).
    const dynamo = documents.filter((d) => d.namespace === 'aws' && d.name === 'DynamoDB');
    expect(dynamo.map((d) => d.aws?.operation)).toEqual(
      expect.arrayContaining(['GetItem', 'PutItem', 'UpdateItem']),
    );
    // The provider's token endpoint, through fetch.
    const provider = documents.filter(
      (d) => d.namespace === 'remote' && d.http?.request?.url?.includes('/sandbox/quiqup/'),
    );
    expect(provider.map((d) => d.http?.response?.status)).toContain(200);
  }, 60_000);
});
