/**
 * A "Lambda container" in a process of its own, for crash tests: it builds a broker over the
 * test's table, sandbox, master key and secrets (from the environment the test passes) and asks
 * for one connection's token, so it takes the refresh lease and calls the provider. The test
 * kills it (SIGKILL) or pauses it (SIGSTOP) mid-call. Run with `node --import tsx`.
 */
import { join } from 'node:path';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { createBroker } from '../../shared/broker.ts';
import { parseConfig } from '../../shared/config.ts';
import { LocalKeyManager } from '../../shared/crypto/local-key-manager.ts';
import { SecretsFileBackend } from '../../shared/secrets.ts';
import { testKinds } from './consent-kind.ts';
import { silentLogger } from './containers.ts';

const env = (name: string): string => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};

const dataDir = env('HOLDER_DATA_DIR');
const broker = createBroker({
  config: parseConfig(JSON.parse(env('HOLDER_CONFIG')), { kinds: testKinds }),
  kinds: testKinds,
  dynamo: new DynamoDBClient({
    endpoint: env('HOLDER_DYNAMO_ENDPOINT'),
    region: 'local',
    credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
  }),
  tableName: env('HOLDER_TABLE'),
  keys: LocalKeyManager.fromEnvironmentOrFile(process.env, join(dataDir, 'local-master.key')),
  secrets: new SecretsFileBackend(join(dataDir, 'secrets.json')),
  logger: silentLogger,
  sandboxBaseUrl: env('HOLDER_SANDBOX_URL'),
  http: { timeoutMs: 30_000, retries: 0 },
});
const answer = await broker.tokens.getToken({
  provider: env('HOLDER_PROVIDER'),
  connectionId: env('HOLDER_CONNECTION_ID'),
});
process.stdout.write(`${JSON.stringify({ ok: answer.ok })}\n`);
