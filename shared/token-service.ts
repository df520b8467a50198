import { Type, type Static } from '@sinclair/typebox';
import {
  InvalidRequestError,
  NeedsReauthError,
  NotFoundError,
  ProviderUnavailableError,
} from './errors.ts';
import { decideRenewal, refreshConnection, type RefreshDeps } from './refresh.ts';
import { getProvider, type ResolvedProvider } from './providers/resolve.ts';
import type { Connection } from './store/connection-store.ts';

export const connectionIdPattern = '^[A-Za-z0-9._:@-]{1,128}$';

/** The `token` function's request. */
export const tokenRequestSchema = Type.Object(
  {
    provider: Type.String({ minLength: 1, maxLength: 63 }),
    connectionId: Type.Optional(Type.String({ pattern: connectionIdPattern })),
    minValiditySeconds: Type.Optional(Type.Integer({ minimum: 0, maximum: 86_400 })),
    forceRefresh: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false },
);
export type TokenRequest = Static<typeof tokenRequestSchema>;

export interface TokenAnswer {
  ok: true;
  provider: string;
  connectionId: string;
  tokenType: string;
  accessToken: string;
  /** ISO 8601; null when the token does not expire. */
  expiresAt: string | null;
  /** The ready-made Authorization header value. */
  authorization: string;
}

export const defaultMinValiditySeconds = 60;

export interface TokenServiceDeps extends RefreshDeps {
  providers: Map<string, ResolvedProvider>;
}

/**
 * Serves a valid token for a connection: the stored one while it stays valid for the requested
 * time, else a renewed one through the one refresh protocol. Concurrent calls for the same
 * connection in this container share one renewal.
 */
export class TokenService {
  private readonly inFlight = new Map<string, Promise<Connection>>();

  constructor(private readonly deps: TokenServiceDeps) {}

  async getToken(request: TokenRequest): Promise<TokenAnswer> {
    const provider = getProvider(this.deps.providers, request.provider);
    const connectionId = this.connectionIdFor(provider, request.connectionId);
    const minValidityMs = (request.minValiditySeconds ?? defaultMinValiditySeconds) * 1000;
    const force = request.forceRefresh ?? false;

    const stored = await this.deps.store.get(provider.id, connectionId);
    if (stored?.status === 'needs_reauth') {
      throw new NeedsReauthError(
        `The ${provider.id} connection "${connectionId}" needs the user to connect again.`,
      );
    }
    if (stored && !decideRenewal(stored.tokens, this.deps.now(), minValidityMs, force).renew) {
      return answer(provider, stored);
    }
    if (!stored && provider.kind.grant !== 'client_credentials') {
      throw new NotFoundError(`No ${provider.id} connection "${connectionId}" exists.`);
    }

    try {
      const renewed = await this.shared(`${provider.id}#${connectionId}`, () =>
        refreshConnection(this.deps, provider, connectionId, {
          minValidityMs,
          force,
          ...(stored ? { seenVersion: stored.version } : {}),
        }).then((result) => result.connection),
      );
      return answer(provider, renewed);
    } catch (error) {
      // Provider down but the stored token still works: serve it rather than fail the caller.
      // Not after a forced refresh: that caller already knows this token is refused.
      if (error instanceof ProviderUnavailableError && stored && !force) {
        const expiresAt = stored.tokens.expiresAt;
        if (expiresAt === undefined || expiresAt > this.deps.now()) {
          this.deps.logger.warn('serving the stored token; renewal failed transiently', {
            provider: provider.id,
            connectionId,
          });
          return answer(provider, stored);
        }
      }
      throw error;
    }
  }

  private connectionIdFor(provider: ResolvedProvider, requested: string | undefined): string {
    if (provider.kind.grant === 'client_credentials') {
      const connectionId = requested ?? 'default';
      if (connectionId !== 'default') {
        throw new NotFoundError(
          `${provider.id} uses client credentials and has the single connection "default".`,
        );
      }
      return connectionId;
    }
    if (!requested) throw new InvalidRequestError(`connectionId is required for ${provider.id}.`);
    return requested;
  }

  /** One promise per key at a time: concurrent callers in this container share it. */
  private shared(key: string, run: () => Promise<Connection>): Promise<Connection> {
    const existing = this.inFlight.get(key);
    if (existing) return existing;
    const promise = run().finally(() => this.inFlight.delete(key));
    this.inFlight.set(key, promise);
    return promise;
  }
}

function answer(provider: ResolvedProvider, connection: Connection): TokenAnswer {
  const { tokens } = connection;
  return {
    ok: true,
    provider: provider.id,
    connectionId: connection.connectionId,
    tokenType: tokens.tokenType,
    accessToken: tokens.accessToken,
    expiresAt: tokens.expiresAt === undefined ? null : new Date(tokens.expiresAt).toISOString(),
    authorization:
      provider.kind.authorization?.(tokens) ?? `${tokens.tokenType} ${tokens.accessToken}`,
  };
}
