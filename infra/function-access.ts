import { tokensContext } from '../shared/store/connection-store.ts';
import { dueIndex, providerIndex } from '../shared/store/table.ts';
import type { EnvelopeAction, TableItemAction } from './grants.ts';

/**
 * Partition-key prefixes of the token table's item types (docs/architecture.md, "Table layout").
 * test/infra/stack.test.ts checks them against the keys the stores really write.
 */
export const itemPrefixes = {
  connection: 'connection#',
  session: 'session#',
  flow: 'flow#',
  /** Provider-wide encrypted cache entries (shared/store/sealed-cache.ts), e.g. Quicko's. */
  providerCache: 'cache#',
} as const;

/**
 * The `purpose` in each envelope's encryption context, which the key grants are bound to.
 * test/infra/stack.test.ts checks them against the contexts the stores really use.
 */
export const envelopePurposes = {
  connectionTokens: tokensContext('', '').purpose,
  connectFlow: 'connect-flow',
  providerCache: 'provider-cache',
} as const;

/** The broker's functions, by the name the offline runtime serves them under (localFunctions). */
export type BrokerFunctionName =
  'token' | 'connections' | 'connect-start' | 'connect-callback' | 'refresher';

/** Exactly what one function may do; broker-stack.ts turns it into its role's statements. */
export interface FunctionAccess {
  /** Item calls on the token table, by partition-key prefix (`dynamodb:LeadingKeys`). */
  items: Partial<Record<string, readonly TableItemAction[]>>;
  /** Global secondary indexes it queries. */
  queries: readonly string[];
  /** Envelope key use, by encryption-context purpose. */
  envelope: Partial<Record<string, readonly EnvelopeAction[]>>;
  /** Whose secrets it reads: every provider's, only the consent-flow providers', or none. */
  secrets: 'all' | 'user_consent' | 'none';
  /** Publishes lifecycle events (shared/events.ts). */
  publishesEvents: boolean;
}

const { connection, session, flow, providerCache } = itemPrefixes;
const { connectionTokens, connectFlow, providerCache: cachePurpose } = envelopePurposes;
const both: readonly EnvelopeAction[] = ['kms:GenerateDataKey', 'kms:Decrypt'];

/**
 * A provider kind's exchange and refresh steps may use the provider-wide sealed cache (Quicko
 * keeps its API-user token there), so every function that runs them gets it. Get and put only:
 * nothing deletes an entry (the table's TTL does). No kind's `startConsent` uses it, so
 * connect-start has none.
 */
const providerStepCache = {
  items: {
    [providerCache]: ['dynamodb:GetItem', 'dynamodb:PutItem'],
  } as Partial<Record<string, readonly TableItemAction[]>>,
  envelope: { [cachePurpose]: both },
};

export const functionAccess: Record<BrokerFunctionName, FunctionAccess> = {
  // Reads a connection, renews it under a lease, creates a client-credentials one on first use
  // (shared/refresh.ts); a failed renewal publishes Connection Refresh Failed / Needs Reauth.
  token: {
    items: {
      [connection]: ['dynamodb:GetItem', 'dynamodb:PutItem', 'dynamodb:UpdateItem'],
      ...providerStepCache.items,
    },
    queries: [],
    envelope: { [connectionTokens]: both, ...providerStepCache.envelope },
    secrets: 'all',
    publishesEvents: true,
  },
  // Connect sessions (written in clear, no envelope), and get / list / delete of connections from
  // their clear attributes: the by-provider index does not project `tokens`, and get asks only
  // for the summary attributes, so this function never decrypts and needs no envelope key.
  connections: {
    items: {
      [session]: ['dynamodb:PutItem'],
      [connection]: ['dynamodb:GetItem', 'dynamodb:DeleteItem'],
    },
    queries: [providerIndex.name],
    envelope: {},
    secrets: 'none',
    publishesEvents: true,
  },
  // Checks and consumes the session, asks the provider to start (OAuth 1.0a request token), and
  // records the flow with its secrets sealed (wrap only). No startConsent reads the sealed cache.
  'connect-start': {
    items: {
      [session]: ['dynamodb:GetItem', 'dynamodb:DeleteItem'],
      [flow]: ['dynamodb:PutItem'],
    },
    queries: [],
    envelope: { [connectFlow]: ['kms:GenerateDataKey'] },
    secrets: 'user_consent',
    publishesEvents: false,
  },
  // Finds and consumes the flow (unwrap its secrets), exchanges the grant, and creates or updates
  // the connection; publishes Connection Created.
  'connect-callback': {
    items: {
      [flow]: ['dynamodb:GetItem', 'dynamodb:DeleteItem'],
      [connection]: ['dynamodb:GetItem', 'dynamodb:PutItem', 'dynamodb:UpdateItem'],
      ...providerStepCache.items,
    },
    queries: [],
    envelope: {
      [connectFlow]: ['kms:Decrypt'],
      [connectionTokens]: both,
      ...providerStepCache.envelope,
    },
    secrets: 'user_consent',
    publishesEvents: true,
  },
  // Queries the due index, then runs the same refresh protocol as the token function (which may
  // re-read, and re-create a client-credentials connection deleted meanwhile).
  refresher: {
    items: {
      [connection]: ['dynamodb:GetItem', 'dynamodb:PutItem', 'dynamodb:UpdateItem'],
      ...providerStepCache.items,
    },
    queries: [dueIndex.name],
    envelope: { [connectionTokens]: both, ...providerStepCache.envelope },
    secrets: 'all',
    publishesEvents: true,
  },
};
