/**
 * The cold-start baseline (bench/cold-start.ts): a handler that imports the same AWS SDK clients
 * as the broker's functions (shared/broker.ts) and nothing else. It names each client, so the
 * bundler keeps them, and constructs none, as the token function constructs none at import.
 */
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { EventBridgeClient } from '@aws-sdk/client-eventbridge';
import { KMSClient } from '@aws-sdk/client-kms';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';

const clients = [
  DynamoDBClient,
  DynamoDBDocumentClient,
  EventBridgeClient,
  KMSClient,
  SecretsManagerClient,
];

export const handler = async () => ({ hello: 'world', clients: clients.map((c) => c.name) });
