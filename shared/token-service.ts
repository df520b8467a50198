import {
  InvalidRequestError,
  NeedsReauthError,
  NotFoundError,
  ProviderUnavailableError,
} from './errors.ts';
import { decideRenewal, refreshConnection, type RefreshDeps } from './refresh.ts';
import { getProvider, type ResolvedProvider } from './providers/resolve.ts';
import type { Connection } from './store/connection-store.ts';
import type { AccessTokenAnswer, SignedRequestAnswer, TokenAnswer } from './token-answers.ts';
import type { SignSpec, TokenRequest } from './token-request.ts';

// The answers live in their own file so the published client's types need nothing of the broker.
export type {
  AccessTokenAnswer,
  CredentialHeadersAnswer,
  SignedRequestAnswer,
  TokenAnswer,
} from './token-answers.ts';

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
  private readonly reads = new Map<string, Promise<Connection | undefined>>();

  constructor(private readonly deps: TokenServiceDeps) {}

  /** A token (bearer-style kinds) or, with `sign`, a signed header (OAuth 1.0a kinds). */
  getToken(request: TokenRequest & { sign: SignSpec }): Promise<SignedRequestAnswer>;
  getToken(request: TokenRequest & { sign?: undefined }): Promise<AccessTokenAnswer>;
  getToken(request: TokenRequest): Promise<TokenAnswer>;
  async getToken(request: TokenRequest): Promise<TokenAnswer> {
    const provider = getProvider(this.deps.providers, request.provider);
    const connectionId = this.connectionIdFor(provider, request.connectionId);
    const minValidityMs = (request.minValiditySeconds ?? defaultMinValiditySeconds) * 1000;
    const force = request.forceRefresh ?? false;
    checkSignUse(provider, request);

    const stored = await this.read(provider.id, connectionId);
    if (stored?.status === 'needs_reauth') {
      throw new NeedsReauthError(
        `The ${provider.id} connection "${connectionId}" needs the user to connect again.`,
      );
    }
    if (stored && !decideRenewal(stored.tokens, this.deps.now(), minValidityMs, force).renew) {
      return answer(provider, stored, request.sign);
    }
    if (!stored && provider.kind.variant !== 'client-credentials') {
      throw new NotFoundError(`No ${provider.id} connection "${connectionId}" exists.`);
    }

    try {
      const renewed = await this.shared(`${provider.id}#${connectionId}`, () =>
        refreshConnection(this.deps, provider, connectionId, {
          minValidityMs,
          force,
          // The copy just read saves the protocol a second read; its lease write is conditional
          // on this version, so a stale copy only costs a retry.
          ...(stored ? { seenVersion: stored.version, initial: stored } : {}),
        }).then((result) => result.connection),
      );
      // Not awaited here: the fallback below is about renewal failing, not about signing.
      return answer(provider, renewed, request.sign);
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
          return answer(provider, stored, request.sign);
        }
      }
      throw error;
    }
  }

  private connectionIdFor(provider: ResolvedProvider, requested: string | undefined): string {
    if (provider.kind.variant === 'client-credentials') {
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

  /**
   * Concurrent callers for one connection in this container share one read: a stampede of 200
   * callers costs the store a read per container, not 200, and the renewal starts at once. A read
   * shared this way started before some of its callers arrived, which is as good as theirs: a
   * token valid then is served as valid, and a forced caller's version, if a renewal landed
   * meanwhile, only makes the protocol find that renewal.
   */
  private read(provider: string, connectionId: string): Promise<Connection | undefined> {
    const key = `${provider}#${connectionId}`;
    const existing = this.reads.get(key);
    if (existing) return existing;
    const promise = this.deps.store
      .get(provider, connectionId)
      .finally(() => this.reads.delete(key));
    this.reads.set(key, promise);
    return promise;
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

/**
 * `sign` goes with the kinds that sign requests (OAuth 1.0a) and with them only: a bearer token
 * answer to an OAuth 1.0a provider would have to carry the token secret.
 */
function checkSignUse(provider: ResolvedProvider, request: TokenRequest): void {
  const signing = provider.kind.variant === 'request-signing';
  if (request.sign && !signing) {
    throw new InvalidRequestError(
      `sign is only for OAuth 1.0a providers; ${provider.id} answers with a token (omit sign).`,
    );
  }
  if (!request.sign && signing) {
    throw new InvalidRequestError(
      `${provider.id} uses OAuth 1.0a: pass sign: { method, url, body? } to get the signed Authorization header for that request.`,
    );
  }
  // Renewing credentials that nothing can renew would only take the connection out of service.
  if (provider.kind.variant === 'provided-credentials' && request.forceRefresh) {
    throw new InvalidRequestError(
      `${provider.id} credentials were supplied by a person and do not expire (omit forceRefresh); if the API refuses them, store new ones.`,
    );
  }
  if (request.sign && request.forceRefresh) {
    throw new InvalidRequestError(
      `${provider.id} credentials do not expire and cannot be renewed (omit forceRefresh); if the provider refuses a signed request, the user must connect again.`,
    );
  }
}

async function answer(
  provider: ResolvedProvider,
  connection: Connection,
  sign: TokenRequest['sign'],
): Promise<TokenAnswer> {
  const { tokens } = connection;
  const { kind } = provider;
  if (kind.variant === 'request-signing') {
    // checkSignUse has made sure a signing kind is always asked with `sign`.
    if (!sign) throw new InvalidRequestError(`${provider.id} signs requests: pass sign.`);
    return {
      ok: true,
      provider: provider.id,
      connectionId: connection.connectionId,
      tokenType: tokens.tokenType,
      authorization: await kind.sign(provider.context, tokens, sign),
      ...metadataOf(tokens),
    };
  }
  if (kind.variant === 'provided-credentials') {
    return {
      ok: true,
      provider: provider.id,
      connectionId: connection.connectionId,
      tokenType: tokens.tokenType,
      headers: { ...provider.headers, ...kind.headers(provider.context, tokens) },
    };
  }
  const authorization =
    provider.kind.authorization?.(tokens) ?? `${tokens.tokenType} ${tokens.accessToken}`;
  return {
    ok: true,
    provider: provider.id,
    connectionId: connection.connectionId,
    tokenType: tokens.tokenType,
    accessToken: tokens.accessToken,
    expiresAt: tokens.expiresAt === undefined ? null : new Date(tokens.expiresAt).toISOString(),
    authorization,
    headers: {
      ...provider.headers,
      // Not awaited where the kind has none: the warm path's answer then takes no extra turn.
      ...(provider.kind.apiHeaders ? await provider.kind.apiHeaders(provider.context) : undefined),
      ...(provider.kind.tokenHeaders?.(tokens) ?? { Authorization: authorization }),
    },
    ...metadataOf(tokens),
  };
}

function metadataOf(tokens: Connection['tokens']): { metadata?: Record<string, string> } {
  return tokens.metadata && Object.keys(tokens.metadata).length > 0
    ? { metadata: tokens.metadata }
    : {};
}
