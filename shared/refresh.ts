import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  NeedsReauthError,
  NotFoundError,
  ProviderRejectedError,
  ProviderUnavailableError,
  VersionConflictError,
  toPublicError,
} from './errors.ts';
import type { BrokerLogger } from './logger.ts';
import type { ResolvedProvider } from './providers/resolve.ts';
import type { TokenSet } from './providers/types.ts';
import type { Connection, ConnectionStore } from './store/connection-store.ts';

export type RenewalDecision =
  | { renew: false; reason: 'valid' | 'does_not_expire' }
  | { renew: true; reason: 'forced' | 'expired' | 'expires_within_min_validity' };

/** Whether tokens must be renewed before serving them; a value, so it is easy to test and log. */
export function decideRenewal(
  tokens: TokenSet,
  now: number,
  minValidityMs: number,
  force: boolean,
): RenewalDecision {
  if (force) return { renew: true, reason: 'forced' };
  if (tokens.expiresAt === undefined) return { renew: false, reason: 'does_not_expire' };
  if (tokens.expiresAt <= now) return { renew: true, reason: 'expired' };
  if (tokens.expiresAt - now < minValidityMs)
    return { renew: true, reason: 'expires_within_min_validity' };
  return { renew: false, reason: 'valid' };
}

export interface RefreshOptions {
  /** The new token must stay valid at least this long (ms). */
  minValidityMs: number;
  /** Renew even if the stored token looks valid (the caller just got a 401 with it). */
  force: boolean;
  /**
   * The version the caller saw when it decided to renew. With `force`, a different version means
   * someone renewed since, and that renewal is what the caller needs.
   */
  seenVersion?: number;
}

export interface RefreshDeps {
  store: ConnectionStore;
  now: () => number;
  logger: BrokerLogger;
  /** How long a refresh lease lasts; longer than the slowest provider call with its retries. */
  leaseMs: number;
  /** How long a caller waits on another holder's lease before giving up. */
  waitMs: number;
}

export const defaultLeaseMs = 30_000;
export const defaultWaitMs = 20_000;

/**
 * The one refresh protocol, for every caller (the token function and the refresher):
 * read → decide → take a lease with a conditional write → call the provider → write the new tokens
 * conditionally on the version and on still holding the lease → release. A caller that finds a live
 * lease waits and re-reads; a dead holder's lease lapses and is taken over.
 */
export async function refreshConnection(
  deps: RefreshDeps,
  provider: ResolvedProvider,
  connectionId: string,
  options: RefreshOptions,
): Promise<Connection> {
  const giveUpAt = deps.now() + deps.waitMs;
  for (let attempt = 0; ; attempt += 1) {
    const current = await deps.store.get(provider.id, connectionId);
    const now = deps.now();
    if (!current) return createConnection(deps, provider, connectionId);
    assertUsable(current);
    const renewedSinceSeen =
      options.seenVersion !== undefined && current.version !== options.seenVersion;
    const decision = decideRenewal(
      current.tokens,
      now,
      options.minValidityMs,
      options.force && !renewedSinceSeen,
    );
    if (!decision.renew) return current;

    if (current.lease && current.lease.expiresAt >= now) {
      if (now >= giveUpAt) {
        throw new ProviderUnavailableError(
          `A renewal of ${provider.id}/${connectionId} elsewhere is taking too long; try again shortly.`,
        );
      }
      await sleep(backoffMs(attempt));
      continue;
    }

    const holder = randomUUID();
    let leased: Connection;
    try {
      leased = await deps.store.acquireLease(current, holder, now, deps.leaseMs);
    } catch (error) {
      if (error instanceof VersionConflictError) continue; // someone else moved first: re-read
      throw error;
    }
    deps.logger.info('renewing connection', {
      provider: provider.id,
      connectionId,
      reason: decision.reason,
    });

    let tokens: TokenSet;
    try {
      tokens = await renewTokens(deps, provider, current.tokens);
    } catch (error) {
      const outcome = await recordRenewalFailure(deps, provider, leased, holder, error);
      if (outcome === 'superseded') continue; // a newer write landed meanwhile: use it
      if (outcome === 'needs_reauth') {
        throw new NeedsReauthError(
          `The ${provider.id} connection "${connectionId}" needs the user to connect again.`,
          { cause: error },
        );
      }
      throw error;
    }
    return saveRenewedTokens(deps, leased, tokens, holder);
  }
}

/** Client-credentials providers have one connection, "default", created on first use. */
async function createConnection(
  deps: RefreshDeps,
  provider: ResolvedProvider,
  connectionId: string,
): Promise<Connection> {
  if (provider.kind.grant !== 'client_credentials' || !provider.kind.mint) {
    throw new NotFoundError(`No ${provider.id} connection "${connectionId}" exists.`);
  }
  const tokens = await provider.kind.mint(provider.context);
  try {
    const created = await deps.store.create(provider.id, connectionId, tokens, deps.now());
    deps.logger.info('connection created', { provider: provider.id, connectionId });
    return created;
  } catch (error) {
    if (!(error instanceof VersionConflictError)) throw error;
    // Another container created it first; its token is as good as ours.
    const existing = await deps.store.get(provider.id, connectionId);
    if (!existing) throw error;
    return existing;
  }
}

/**
 * New tokens from the provider: refresh while a refresh token lives, else (or when the provider
 * refuses the refresh token) mint afresh where the kind can. A refresh answer without a refresh
 * token keeps the old one (Quidkey's guide, RFC 6749 §6).
 */
export async function renewTokens(
  deps: Pick<RefreshDeps, 'now' | 'logger'>,
  provider: ResolvedProvider,
  current: TokenSet | undefined,
): Promise<TokenSet> {
  const { kind, context } = provider;
  const refreshable =
    current?.refreshToken !== undefined &&
    kind.refresh &&
    (current.refreshTokenExpiresAt ?? Infinity) > deps.now();
  if (refreshable && current) {
    try {
      const renewed = await kind.refresh!(context, current);
      if (renewed.refreshToken) return renewed;
      return {
        ...renewed,
        refreshToken: current.refreshToken!,
        ...(current.refreshTokenExpiresAt !== undefined
          ? { refreshTokenExpiresAt: current.refreshTokenExpiresAt }
          : {}),
      };
    } catch (error) {
      if (!(error instanceof ProviderRejectedError) || !kind.mint) throw error;
      deps.logger.info('refresh token refused; minting afresh', {
        provider: provider.id,
        providerCode: error.providerCode,
      });
    }
  }
  if (kind.mint) return kind.mint(context);
  throw new NeedsReauthError(`The ${provider.id} connection cannot be renewed without the user.`);
}

async function recordRenewalFailure(
  deps: RefreshDeps,
  provider: ResolvedProvider,
  leased: Connection,
  holder: string,
  error: unknown,
): Promise<'recorded' | 'needs_reauth' | 'superseded'> {
  const permanent = error instanceof ProviderRejectedError || error instanceof NeedsReauthError;
  const needsReauth = permanent && provider.kind.grant === 'user_consent';
  const publicError = toPublicError(error);
  deps.logger.warn('renewal failed', {
    provider: provider.id,
    connectionId: leased.connectionId,
    code: publicError.code,
    reason: publicError.message,
  });
  try {
    await deps.store.recordFailure(leased, holder, publicError, deps.now(), needsReauth);
  } catch (writeError) {
    if (writeError instanceof VersionConflictError) return 'superseded';
    throw writeError;
  }
  return needsReauth ? 'needs_reauth' : 'recorded';
}

/**
 * Stores renewed tokens. If our lease lapsed while the provider answered but nobody has written
 * since, our tokens are still the newest: write them (fenced by version alone) rather than drop
 * them, since the provider may have rotated the refresh token. If someone wrote since, theirs win.
 */
async function saveRenewedTokens(
  deps: RefreshDeps,
  leased: Connection,
  tokens: TokenSet,
  holder: string,
): Promise<Connection> {
  try {
    return await deps.store.saveTokens(leased, tokens, deps.now(), holder);
  } catch (error) {
    if (!(error instanceof VersionConflictError)) throw error;
  }
  for (;;) {
    const latest = await deps.store.get(leased.provider, leased.connectionId);
    if (!latest)
      throw new NotFoundError(
        `The ${leased.provider} connection "${leased.connectionId}" was deleted.`,
      );
    if (latest.version !== leased.version) return latest;
    try {
      return await deps.store.saveTokens(latest, tokens, deps.now());
    } catch (error) {
      if (!(error instanceof VersionConflictError)) throw error;
    }
  }
}

function assertUsable(connection: Connection): void {
  if (connection.status === 'needs_reauth') {
    throw new NeedsReauthError(
      `The ${connection.provider} connection "${connection.connectionId}" needs the user to connect again.`,
    );
  }
}

/** 50 ms doubling to 800 ms, with full jitter: waiters do not poll in step. */
function backoffMs(attempt: number): number {
  return Math.random() * Math.min(800, 50 * 2 ** attempt) + 10;
}
