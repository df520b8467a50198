import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CreateTableCommand, DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { CreateKeyCommand, KMSClient } from '@aws-sdk/client-kms';
import { CreateSecretCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { depsFromEnvironment } from '../shared/broker-core.ts';
import { createBroker } from '../shared/broker.ts';
import { parseConfig } from '../shared/config.ts';
import { Envelope } from '../shared/crypto/envelope.ts';
import { KmsKeyManager } from '../shared/crypto/kms-key-manager.ts';
import { SecretSource, SecretsManagerBackend } from '../shared/secrets.ts';
import { createTableInput } from '../shared/store/table.ts';
import { startTestBroker, type TestBroker } from './helpers/local.ts';

// The AWS code path (the same adapters the Lambda functions use) against moto, an AWS API
// emulator started by test/setup/moto.ts. Where moto is not installed these are skipped, and the
// run says so.
const motoUrl = inject('motoUrl');
if (!motoUrl) console.warn('SKIPPED: AWS adapter tests (moto is not available on this machine)');

const aws = {
  region: 'us-east-1',
  credentials: { accessKeyId: 'testing', secretAccessKey: 'testing' },
};

describe.skipIf(!motoUrl)('AWS adapters against moto', () => {
  let kms: KMSClient;
  let keyId: string;
  let secrets: SecretsManagerClient;
  const prefix = `obt-${Date.now()}`;

  beforeAll(async () => {
    kms = new KMSClient({ ...aws, endpoint: motoUrl });
    secrets = new SecretsManagerClient({ ...aws, endpoint: motoUrl });
    keyId = (await kms.send(new CreateKeyCommand({ Description: 'token broker test' })))
      .KeyMetadata!.Arn!;
  });
  afterAll(() => {
    kms.destroy();
    secrets.destroy();
  });

  it('KMS: envelope round trip; another context or a tampered data key is refused', async () => {
    const envelope = new Envelope(new KmsKeyManager(kms, keyId));
    const context = { purpose: 'connection-tokens', provider: 'quidkey', connectionId: 'default' };
    const ciphertext = await envelope.encrypt('{"accessToken":"kms-protected"}', context);
    const coldContainer = () => new Envelope(new KmsKeyManager(kms, keyId));
    expect(await coldContainer().decrypt(ciphertext, context)).toBe(
      '{"accessToken":"kms-protected"}',
    );
    await expect(
      coldContainer().decrypt(ciphertext, { ...context, connectionId: 'other' }),
    ).rejects.toThrow();
    const parts = ciphertext.split('.');
    const wrapped = Buffer.from(parts[1]!, 'base64url');
    wrapped[wrapped.length - 1]! ^= 1;
    parts[1] = wrapped.toString('base64url');
    await expect(coldContainer().decrypt(parts.join('.'), context)).rejects.toThrow();
  });

  it('Secrets Manager: reads <prefix>/<provider>, checks fields, does not cache a failure', async () => {
    const source = new SecretSource(new SecretsManagerBackend(secrets, prefix));
    // No such secret (ResourceNotFoundException): the provider is not set up, said by name.
    await expect(source.get('quidkey', ['client_id', 'client_secret'])).rejects.toMatchObject({
      code: 'provider_misconfigured',
      message: 'The quidkey provider is not set up: its secret is missing.',
      cause: { message: `see the Secrets Manager secret ${prefix}/quidkey` },
    });
    await secrets.send(
      new CreateSecretCommand({
        Name: `${prefix}/quidkey`,
        SecretString: JSON.stringify({ client_id: 'id', client_secret: 'value' }),
      }),
    );
    expect(await source.get('quidkey', ['client_id', 'client_secret'])).toEqual({
      client_id: 'id',
      client_secret: 'value',
    });
    await secrets.send(
      new CreateSecretCommand({ Name: `${prefix}/broken`, SecretString: 'not json s3cret' }),
    );
    await secrets.send(
      new CreateSecretCommand({
        Name: `${prefix}/partial`,
        SecretString: JSON.stringify({ client_id: 'id', client_secret: '' }),
      }),
    );
    await expect(source.get('partial', ['client_id', 'client_secret'])).rejects.toMatchObject({
      code: 'provider_misconfigured',
      message: 'The partial provider is not set up: its secret lacks client_secret.',
    });
    // As the stack creates it, before the operator puts the real value (docs/deployment.md).
    await secrets.send(
      new CreateSecretCommand({
        Name: `${prefix}/placeholder`,
        SecretString: JSON.stringify({ client_id: 'REPLACE_ME', client_secret: 'generated' }),
      }),
    );
    await expect(source.get('placeholder', ['client_id', 'client_secret'])).rejects.toMatchObject({
      code: 'provider_misconfigured',
      message:
        'The placeholder provider is not set up: its secret still holds the REPLACE_ME placeholder in client_id.',
    });
    const error = await source.get('broken', ['client_id']).catch((e: unknown) => e as Error);
    expect(error.message).not.toContain('s3cret');
    expect(String((error as Error & { cause?: Error }).cause?.message)).not.toContain('s3cret');
  });

  describe('the whole container from the environment (AWS_ENDPOINT_URL → moto)', () => {
    let local: TestBroker;
    let dir: string;
    beforeAll(async () => {
      local = await startTestBroker(); // only for its sandbox providers
      dir = mkdtempSync(join(tmpdir(), 'broker-aws-'));
    });
    afterAll(async () => {
      await local.close();
      rmSync(dir, { recursive: true, force: true });
    });

    it('fetches, stores (KMS-encrypted in DynamoDB) and renews a Quidkey token', async () => {
      const table = `tokens-${Date.now()}`;
      const dynamo = new DynamoDBClient({ ...aws, endpoint: motoUrl });
      await dynamo.send(new CreateTableCommand(createTableInput(table)));
      dynamo.destroy();
      const sandboxSecret = JSON.parse(
        readFileSync(join(local.dataDir, 'secrets.json'), 'utf8'),
      ).quidkey;
      await secrets.send(
        new CreateSecretCommand({
          Name: `${prefix}-env/quidkey`,
          SecretString: JSON.stringify(sandboxSecret),
        }),
      );

      const env = {
        AWS_ENDPOINT_URL: motoUrl,
        AWS_REGION: 'us-east-1',
        AWS_ACCESS_KEY_ID: 'testing',
        AWS_SECRET_ACCESS_KEY: 'testing',
        BROKER_MODE: 'aws',
        BROKER_TABLE_NAME: table,
        BROKER_KMS_KEY_ID: keyId,
        BROKER_SECRETS_PREFIX: `${prefix}-env`,
        BROKER_SANDBOX_URL: `${local.url}/sandbox`,
        // As the TokenBroker construct deploys it: parseConfig's result.
        BROKER_CONFIG_JSON: JSON.stringify(
          parseConfig({ providers: { quidkey: { catalog: 'quidkey', environment: 'sandbox' } } }),
        ),
      };
      // The SDK clients take their endpoint from the standard variables, as in any emulator set-up.
      const saved = { ...process.env };
      Object.assign(process.env, env);
      try {
        const deps = depsFromEnvironment(process.env);
        expect(deps.keys).toBeInstanceOf(KmsKeyManager);
        const broker = createBroker({
          ...deps,
          sandboxBaseUrl: env.BROKER_SANDBOX_URL,
          now: local.clock.now,
        });
        const first = await broker.tokens.getToken({ provider: 'quidkey' });
        const again = await broker.tokens.getToken({ provider: 'quidkey' });
        expect(again.accessToken).toBe(first.accessToken);
        local.clock.advance(900);
        const renewed = await broker.tokens.getToken({ provider: 'quidkey' });
        expect(renewed.accessToken).not.toBe(first.accessToken);
        expect(local.sandboxes.quidkey.callCount('refresh')).toBe(1);
        const check = await fetch(`${local.url}/sandbox/quidkey/api/v1/me`, {
          headers: { authorization: renewed.authorization },
        });
        expect(check.status).toBe(200);
      } finally {
        for (const key of Object.keys(env)) delete process.env[key];
        Object.assign(process.env, saved);
      }
    });
  });
});
