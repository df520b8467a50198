import { tokensContext } from '../shared/store/connection-store.ts';
import { dueIndex, itemPrefixes, providerIndex } from '../shared/store/table.ts';
import type { BrokerFunctionName } from './function-names.ts';
import type { EnvelopeAction, TableItemAction } from './grants.ts';

export type { BrokerFunctionName } from './function-names.ts';

/**
 * The `purpose` in each envelope's encryption context, which the key grants are bound to.
 * test/infra/stack.test.ts checks them against the contexts the stores really use.
 */
export const envelopePurposes = {
  connectionTokens: tokensContext('', '').purpose,
  connectFlow: 'connect-flow',
  providerCache: 'provider-cache',
} as const;

/** Exactly what one function may do; the construct turns it into its role's statements. */
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

/** How a function is reached: by Lambda invoke, by an HTTP API route, or by the schedule. */
export type FunctionTrigger =
  | { kind: 'invoke' }
  | { kind: 'route'; methods: readonly ('GET' | 'POST')[]; path: string }
  | { kind: 'schedule' };

export interface BrokerFunctionSpec {
  description: string;
  /** The handler module, from the repository root; it exports `handler`. */
  entry: string;
  trigger: FunctionTrigger;
  /** Default 30. The refresher's is sized from the configuration (refresherTimeoutSeconds). */
  timeoutSeconds?: number;
  access: FunctionAccess;
}

/**
 * The broker's functions, once: the construct creates one Lambda per entry with the grants its
 * `access` names and the route its `trigger` names, and the offline runtime serves the same
 * handlers under the same names and routes.
 */
export const brokerFunctions = {
  // Reads a connection, renews it under a lease, creates a client-credentials one on first use
  // (shared/refresh.ts); a failed renewal publishes Connection Refresh Failed / Needs Reauth.
  token: {
    description: 'Serves a valid OAuth token for a provider connection (Lambda invoke)',
    entry: 'functions/token.ts',
    trigger: { kind: 'invoke' },
    access: {
      items: {
        [connection]: ['dynamodb:GetItem', 'dynamodb:PutItem', 'dynamodb:UpdateItem'],
        ...providerStepCache.items,
      },
      queries: [],
      envelope: { [connectionTokens]: both, ...providerStepCache.envelope },
      secrets: 'all',
      publishesEvents: true,
    },
  },
  // Connect sessions (written in clear, no envelope), and get / list / delete of connections from
  // their clear attributes: the by-provider index does not project `tokens`, and get asks only
  // for the summary attributes, so this function never decrypts and needs no envelope key.
  connections: {
    description: 'Connect sessions; get, list and delete connections (Lambda invoke)',
    entry: 'functions/connections.ts',
    trigger: { kind: 'invoke' },
    timeoutSeconds: 10,
    access: {
      items: {
        [session]: ['dynamodb:PutItem'],
        [connection]: ['dynamodb:GetItem', 'dynamodb:DeleteItem'],
      },
      queries: [providerIndex.name],
      envelope: {},
      secrets: 'none',
      publishesEvents: true,
    },
  },
  // Checks and consumes the session, asks the provider to start (OAuth 1.0a request token), and
  // records the flow with its secrets sealed (wrap only). No startConsent reads the sealed cache.
  'connect-start': {
    description: 'GET /connect/{provider}: starts a consent flow and sends the browser on',
    entry: 'functions/connect-start.ts',
    trigger: { kind: 'route', methods: ['GET'], path: '/connect/{provider}' },
    // API Gateway gives up on an integration after 30 s; the provider call has 3 × 5 s at most.
    timeoutSeconds: 29,
    access: {
      items: {
        [session]: ['dynamodb:GetItem', 'dynamodb:DeleteItem'],
        [flow]: ['dynamodb:PutItem'],
      },
      queries: [],
      envelope: { [connectFlow]: ['kms:GenerateDataKey'] },
      secrets: 'user_consent',
      publishesEvents: false,
    },
  },
  // Finds and consumes the flow (unwrap its secrets), exchanges the grant, and creates or updates
  // the connection; publishes Connection Created.
  'connect-callback': {
    description: 'GET /callback/{provider}: completes a consent flow and stores the tokens',
    entry: 'functions/connect-callback.ts',
    // POST: the api_key / basic credentials form, which never puts a value in a URL.
    trigger: { kind: 'route', methods: ['GET', 'POST'], path: '/callback/{provider}' },
    timeoutSeconds: 29,
    access: {
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
  },
  // Queries the due index, then runs the same refresh protocol as the token function (which may
  // re-read, and re-create a client-credentials connection deleted meanwhile).
  refresher: {
    description: 'Scheduled: renews every connection that falls due before the next run',
    entry: 'functions/refresher.ts',
    trigger: { kind: 'schedule' },
    access: {
      items: {
        [connection]: ['dynamodb:GetItem', 'dynamodb:PutItem', 'dynamodb:UpdateItem'],
        ...providerStepCache.items,
      },
      queries: [dueIndex.name],
      envelope: { [connectionTokens]: both, ...providerStepCache.envelope },
      secrets: 'all',
      publishesEvents: true,
    },
  },
} as const satisfies Record<BrokerFunctionName, BrokerFunctionSpec>;

export const brokerFunctionNames = Object.keys(brokerFunctions) as BrokerFunctionName[];

/** The HTTP API routes, from the catalog: what the stack and the offline runtime serve. */
export function functionRoutes(): {
  method: 'GET' | 'POST';
  path: string;
  functionName: BrokerFunctionName;
}[] {
  return brokerFunctionNames.flatMap((functionName) => {
    const trigger: FunctionTrigger = brokerFunctions[functionName].trigger;
    return trigger.kind === 'route'
      ? trigger.methods.map((method) => ({ method, path: trigger.path, functionName }))
      : [];
  });
}
