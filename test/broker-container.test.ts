import { randomBytes } from 'node:crypto';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { afterEach, describe, expect, it } from 'vitest';
import {
  createBrokerCore,
  getBrokerCore,
  setBroker,
  type BrokerDeps,
} from '../shared/broker-core.ts';
import { createBroker, getBroker } from '../shared/broker.ts';
import { parseConfig } from '../shared/config.ts';
import { LocalKeyManager } from '../shared/crypto/local-key-manager.ts';
import { SecretsFileBackend } from '../shared/secrets.ts';

// The token and refresher functions ask for the broker's core, the connect functions for the
// whole broker; a container still holds one broker, whichever asks first. Building one calls
// nothing, so these need no table.

const clients: DynamoDBClient[] = [];

function deps(): BrokerDeps {
  const dynamo = new DynamoDBClient({
    region: 'local',
    endpoint: 'http://127.0.0.1:9',
    credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
  });
  clients.push(dynamo);
  return {
    config: parseConfig({ providers: { quiqup: { catalog: 'quiqup', environment: 'sandbox' } } }),
    dynamo,
    tableName: 'unused',
    keys: new LocalKeyManager(randomBytes(32)),
    secrets: new SecretsFileBackend('/nonexistent/secrets.json'),
  };
}

afterEach(() => {
  setBroker(undefined);
  for (const client of clients.splice(0)) client.destroy();
});

describe('one broker per container', () => {
  it('getBroker builds the connect services on the core already here, and installs the whole', () => {
    const core = createBrokerCore(deps());
    setBroker(core);
    expect(getBrokerCore()).toBe(core);
    expect('connect' in core).toBe(false);

    const broker = getBroker();
    expect(broker.connect).toBeDefined();
    expect(broker.connections).toBeDefined();
    // The core's own services: one store, token service and set of caches per container.
    expect(broker.tokens).toBe(core.tokens);
    expect(broker.refresher).toBe(core.refresher);
    expect(broker.store).toBe(core.store);
    expect(broker.providers).toBe(core.providers);
    expect(getBrokerCore()).toBe(broker);
    expect(getBroker()).toBe(broker);
  });

  it('a whole broker installed with setBroker is what both accessors return', () => {
    const broker = createBroker(deps());
    setBroker(broker);
    expect(getBrokerCore()).toBe(broker);
    expect(getBroker()).toBe(broker);
  });
});
