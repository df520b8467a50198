import * as Type from '@sinclair/typebox';
import type { Static } from '@sinclair/typebox';
import { InvalidRequestError, NotFoundError } from '../errors.ts';
import { publishSafely, type EventPublisher } from '../events.ts';
import type { BrokerLogger } from '../logger.ts';
import { getProvider, type ResolvedProvider } from '../providers/resolve.ts';
import type {
  ConnectionDirectory,
  ConnectionSummary,
  SummaryPage,
} from '../store/connection-directory.ts';
import { connectionIdPattern } from '../token-request.ts';
import { validateRequest } from '../validate.ts';
import type { ConnectService } from './connect-service.ts';

const provider = Type.String({ minLength: 1, maxLength: 63 });
const connectionId = Type.String({ pattern: connectionIdPattern });

/** The `connections` function's requests, one schema per action. */
export const connectionsRequestSchemas = {
  createConnectSession: Type.Object(
    {
      action: Type.Literal('createConnectSession'),
      provider,
      connectionId,
      returnTo: Type.Optional(Type.String({ maxLength: 2048 })),
      /** Values for the entry's connectionParams (`{subdomain}`, `{tenant}`, `{shop}`). */
      params: Type.Optional(
        Type.Record(
          Type.String({ pattern: '^[A-Za-z][A-Za-z0-9_]{0,63}$' }),
          Type.String({ minLength: 1, maxLength: 256 }),
          { maxProperties: 16 },
        ),
      ),
    },
    { additionalProperties: false },
  ),
  /**
   * api_key / basic: service credentials stored directly by the platform team. The connections
   * function is invoked with IAM only (no HTTP route), so this never meets a browser.
   */
  storeCredentials: Type.Object(
    {
      action: Type.Literal('storeCredentials'),
      provider,
      connectionId,
      credentials: Type.Record(
        Type.String({ pattern: '^[A-Za-z][A-Za-z0-9_]{0,63}$' }),
        Type.String({ minLength: 1, maxLength: 4096 }),
        { maxProperties: 16 },
      ),
    },
    { additionalProperties: false },
  ),
  get: Type.Object(
    { action: Type.Literal('get'), provider, connectionId },
    { additionalProperties: false },
  ),
  list: Type.Object(
    {
      action: Type.Literal('list'),
      provider,
      limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 100 })),
      cursor: Type.Optional(Type.String({ maxLength: 2048 })),
    },
    { additionalProperties: false },
  ),
  delete: Type.Object(
    { action: Type.Literal('delete'), provider, connectionId },
    { additionalProperties: false },
  ),
};

/** Validates against the schema of the request's own action, so errors name the real field. */
export function parseConnectionsRequest(payload: unknown): ConnectionsRequest {
  const action = (payload as { action?: unknown } | null)?.action;
  const schema =
    typeof action === 'string' && Object.hasOwn(connectionsRequestSchemas, action)
      ? connectionsRequestSchemas[action as keyof typeof connectionsRequestSchemas]
      : undefined;
  if (!schema) {
    throw new InvalidRequestError(
      `Invalid request: action: must be one of ${Object.keys(connectionsRequestSchemas).join(', ')}.`,
    );
  }
  return validateRequest(schema, payload) as ConnectionsRequest;
}

export type ConnectionsRequest = {
  [A in keyof typeof connectionsRequestSchemas]: Static<(typeof connectionsRequestSchemas)[A]>;
}[keyof typeof connectionsRequestSchemas];

export type ConnectionsAnswer =
  | { ok: true; url: string; expiresAt: string }
  | { ok: true; connection: ConnectionSummary }
  | ({ ok: true } & SummaryPage)
  | { ok: true; deleted: true };

export interface ConnectionsApiDeps {
  providers: Map<string, ResolvedProvider>;
  directory: ConnectionDirectory;
  connect: ConnectService;
  events: EventPublisher;
  logger: BrokerLogger;
  now: () => number;
}

/**
 * The `connections` function's use cases: connect sessions for a backend, and get / list /
 * delete of connections. Answers carry status and times, never a token.
 */
export class ConnectionsApi {
  constructor(private readonly deps: ConnectionsApiDeps) {}

  async handle(request: ConnectionsRequest): Promise<ConnectionsAnswer> {
    const { id } = getProvider(this.deps.providers, request.provider);
    switch (request.action) {
      case 'createConnectSession':
        return this.deps.connect.createConnectSession(request);
      case 'storeCredentials': {
        await this.deps.connect.storeCredentials(request);
        const connection = await this.deps.directory.get(id, request.connectionId);
        if (!connection) throw notFound(id, request.connectionId);
        return { ok: true, connection };
      }
      case 'get': {
        const connection = await this.deps.directory.get(id, request.connectionId);
        if (!connection) throw notFound(id, request.connectionId);
        return { ok: true, connection };
      }
      case 'list': {
        const page = await this.deps.directory.list(id, {
          ...(request.limit !== undefined ? { limit: request.limit } : {}),
          ...(request.cursor !== undefined ? { cursor: request.cursor } : {}),
        });
        return { ok: true, ...page };
      }
      case 'delete': {
        // The item holds the only ciphertext of the tokens: once it is gone, nothing remains to
        // decrypt. A refresh in flight cannot bring it back: its write is conditional on the item.
        if (!(await this.deps.directory.delete(id, request.connectionId))) {
          throw notFound(id, request.connectionId);
        }
        this.deps.logger.info('connection deleted', {
          provider: id,
          connectionId: request.connectionId,
        });
        await publishSafely(this.deps.events, this.deps.logger, {
          type: 'Connection Deleted',
          provider: id,
          connectionId: request.connectionId,
          status: 'deleted',
          at: this.deps.now(),
        });
        return { ok: true, deleted: true };
      }
    }
  }
}

function notFound(provider: string, connectionId: string): NotFoundError {
  return new NotFoundError(`No ${provider} connection "${connectionId}" exists.`);
}
