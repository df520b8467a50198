import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  NeedsReauthError,
  NotFoundError,
  ProviderRejectedError,
  ProviderUnavailableError,
  VersionConflictError,
  toPublicError,
} from './errors.ts';
import { publishSafely, type EventPublisher, type LifecycleEvent } from './events.ts';
import type { BrokerLogger } from './logger.ts';
import { describeError } from './middleware.ts';
import { countRenewed } from './observability.ts';
import type { ResolvedProvider } from './providers/resolve.ts';
import type { TokenSet } from './providers/types.ts';
import type { Claim, Connection, ConnectionStore, ReadItem } from './store/connection-store.ts';

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
  if (tokens.expiresAt - now < minValidityMs) {
    return { renew: true, reason: 'expires_within_min_validity' };
  }
  return { renew: false, reason: 'valid' };
}

/**
 * When the refresher should renew these tokens (epoch ms), or undefined to keep the connection
 * out of the due index: tokens that never expire, or that nothing could renew.
 * For kinds that cannot mint, the refresh token's own end counts too (minus `reauthLeadMs`), so
 * a connection whose consent is running out is noticed before it breaks.
 */
export function nextDueAt(provider: ResolvedProvider, tokens: TokenSet): number | undefined {
  if (tokens.expiresAt === undefined) return undefined;
  const { kind } = provider;
  if (!kind.mint && !(kind.refresh && tokens.refreshToken)) return undefined;
  const due = tokens.expiresAt - provider.leadMs;
  if (kind.mint || tokens.refreshTokenExpiresAt === undefined) return due;
  return Math.min(due, tokens.refreshTokenExpiresAt - provider.reauthLeadMs);
}

/** Backoff before the refresher tries a failing connection again: 1 min doubling to 1 h, jittered. */
export function retryDelayMs(failures: number, random = Math.random): number {
  const ceiling = Math.min(60 * 60_000, 60_000 * 2 ** Math.max(0, failures - 1));
  return ceiling / 2 + random() * (ceiling / 2);
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
  /** Wait for another holder's lease (token callers); the refresher moves on instead. */
  waitForLease?: boolean;
  /** A copy already read (e.g. from the due index), to save one read; it may be stale. */
  initial?: Connection;
  /**
   * Where the provider call waits for its turn (the refresher's concurrency gates). It may
   * decline by throwing RenewalNotStarted: the lease is given back and nothing else is written.
   */
  callSlot?: <T>(call: () => Promise<T>) => Promise<T>;
}

/** Thrown by a `callSlot` that will not run the call after all (out of time, provider down). */
export class RenewalNotStarted extends Error {
  constructor() {
    super('The renewal was not started.');
    this.name = 'RenewalNotStarted';
  }
}

export type RefreshOutcome = 'renewed' | 'created' | 'fresh' | 'leased_elsewhere' | 'not_started';

export interface RefreshResult {
  connection: Connection;
  outcome: RefreshOutcome;
}

export interface RefreshDeps {
  store: ConnectionStore;
  events: EventPublisher;
  now: () => number;
  logger: BrokerLogger;
  /** How long a lease lasts unless its holder's heartbeat extends it (ms). */
  leaseMs: number;
  /** How often a holder extends its lease while it works (ms); default a quarter of leaseMs. */
  heartbeatMs?: number;
  /** How long a caller waits on another holder's lease before giving up. */
  waitMs: number;
  /** This container's provider call durations, which set how often waiters poll. */
  callTimes?: ProviderCallTimes;
  /** How the protocol pauses (waiters' polls, store retries); the timers by default. */
  sleep?: (ms: number) => Promise<unknown>;
}

/**
 * The lease and its heartbeat: a holder extends its lease every 2 s while it works, so a live
 * holder keeps it through any provider call, and a dead one's lapses within 8 s of its last beat:
 * a waiter takes over within 8 s of a holder's death (docs/architecture.md, "The lease").
 */
export const defaultLeaseMs = 8_000;
export const defaultWaitMs = 20_000;

/**
 * Provider call durations seen in this container, per provider (an exponentially weighted
 * average), so waiters poll at a pace tied to how long the holder's call should take.
 */
export class ProviderCallTimes {
  private readonly averages = new Map<string, number>();

  /** Before any call was seen: a typical OAuth token endpoint's answer time. */
  constructor(private readonly initialMs = 100) {}

  expectedMs(providerId: string): number {
    return this.averages.get(providerId) ?? this.initialMs;
  }

  record(providerId: string, ms: number): void {
    const previous = this.averages.get(providerId);
    this.averages.set(providerId, previous === undefined ? ms : 0.8 * previous + 0.2 * ms);
  }
}

const containerCallTimes = new ProviderCallTimes();

/**
 * How long a waiter sleeps before it reads the connection again, shaped around the moment the
 * holder's call should end (this container's average call time for the provider, 100 ms until a
 * call was seen): a quarter of the expected call (5 ms–1 s) during its first half, when the new
 * token cannot have landed yet; a twelfth (4–100 ms) from then until twice the expected time (at
 * most 1 s of it), when it lands; past that the holder is slow or dead, so half the time waited
 * so far, at most once a second. Jittered (×0.75–1.25) so waiters in different containers do
 * not read in step; never past the moment the holder's lease lapses (then it is taken over at
 * once). Over a whole 20 s wait that is at most 60 reads per connection per container (one poller
 * each: the token service shares one renewal per connection in a container).
 */
export function waitPollMs(
  expectedCallMs: number,
  waitedMs: number,
  msUntilLapse: number,
  random = Math.random,
): number {
  const clamp = (value: number, min: number, max: number) => Math.min(max, Math.max(min, value));
  const landingFrom = expectedCallMs / 2;
  const landingUntil = Math.min(2 * expectedCallMs, landingFrom + 1_000);
  const landing = clamp(expectedCallMs / 12, 4, 100);
  const interval =
    waitedMs < landingFrom
      ? clamp(expectedCallMs / 4, 5, 1_000)
      : waitedMs < landingUntil
        ? landing
        : clamp(waitedMs / 2, landing, 1_000);
  const jittered = interval * (0.75 + 0.5 * random());
  return msUntilLapse >= 0 ? Math.min(jittered, msUntilLapse + 1) : jittered;
}

/**
 * The one refresh protocol, for every caller (the token function and the refresher):
 * read → decide → take a lease with a conditional write → call the provider (the lease extended
 * by a heartbeat meanwhile) → write the new tokens conditionally on the version and on still
 * holding the lease, which releases it. A caller that finds a live lease waits and re-reads (or,
 * for the refresher, moves on); a dead holder's lease lapses and is taken over. A connection
 * that does not exist yet (client credentials) is claimed the same way before its first mint.
 * See docs/architecture.md, "The refresh protocol".
 */
export async function refreshConnection(
  deps: RefreshDeps,
  provider: ResolvedProvider,
  connectionId: string,
  options: RefreshOptions,
): Promise<RefreshResult> {
  const result = await runRefreshProtocol(deps, provider, connectionId, options);
  // Failures and needs_reauth are counted from their lifecycle events; a success has none.
  if (result.outcome === 'renewed' || result.outcome === 'created') countRenewed(provider.id);
  return result;
}

async function runRefreshProtocol(
  deps: RefreshDeps,
  provider: ResolvedProvider,
  connectionId: string,
  options: RefreshOptions,
): Promise<RefreshResult> {
  const giveUpAt = deps.now() + deps.waitMs;
  const waitStarted = performance.now();
  const callTimes = deps.callTimes ?? containerCallTimes;
  const wait = async (msUntilLapse: number) => {
    if (deps.now() >= giveUpAt) {
      throw new ProviderUnavailableError(
        `A renewal of ${provider.id}/${connectionId} elsewhere is taking too long; try again shortly.`,
      );
    }
    const waitedMs = performance.now() - waitStarted;
    await (deps.sleep ?? sleep)(
      waitPollMs(callTimes.expectedMs(provider.id), waitedMs, msUntilLapse),
    );
  };
  const callProvider = (heartbeat: Heartbeat, call: () => Promise<TokenSet>) =>
    (options.callSlot ?? runNow)(async () => {
      // Lost the lease while waiting for a slot: someone else renews; do not call twice.
      if (heartbeat.lost) throw new RenewalNotStarted();
      const started = performance.now();
      const tokens = await call();
      callTimes.record(provider.id, performance.now() - started);
      return tokens;
    });

  let initial = options.initial;
  for (;;) {
    const current = initial ?? (await deps.store.get(provider.id, connectionId));
    initial = undefined; // a stale copy is good for one try only
    const now = deps.now();
    if (!current) {
      // Only a waiting caller creates: the refresher does not bring back a connection deleted
      // since it read the due index.
      const { kind } = provider;
      if (kind.variant !== 'client-credentials' || options.waitForLease === false) {
        throw new NotFoundError(`No ${provider.id} connection "${connectionId}" exists.`);
      }
      const holder = randomUUID();
      let claim: Claim;
      try {
        claim = await deps.store.claim(provider.id, connectionId, holder, now, deps.leaseMs);
      } catch (error) {
        if (!(error instanceof VersionConflictError)) throw error;
        // Another caller is minting it (or just did): wait for it as for any lease.
        await wait(-1);
        continue;
      }
      const mint = () => kind.mint(provider.context);
      const created = await mintClaimed(deps, provider, claim, holder, mint, callProvider);
      if (created) return { connection: created, outcome: 'created' };
      continue; // our claim lapsed and was taken over: wait for the new claimer
    }
    assertUsable(current);

    // Looking as far ahead as the caller does (the refresher: up to its next run), so a consent
    // that reaches its re-consent lead before then is flagged now, not one run late.
    const lookAheadMs = Math.max(0, options.minValidityMs - provider.leadMs);
    const consentEnding = consentRunningOut(provider, current.tokens, now + lookAheadMs);
    const renewedSinceSeen =
      options.seenVersion !== undefined && current.version !== options.seenVersion;
    const decision = decideRenewal(
      current.tokens,
      now,
      options.minValidityMs,
      options.force && !renewedSinceSeen,
    );
    if (!decision.renew && !consentEnding) return { connection: current, outcome: 'fresh' };

    if (current.lease && current.lease.expiresAt >= now) {
      if (options.waitForLease === false) {
        return { connection: current, outcome: 'leased_elsewhere' };
      }
      await wait(current.lease.expiresAt - now);
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
    const reason = consentEnding ? 'consent_ending' : decision.reason;
    deps.logger.info('renewing connection', { provider: provider.id, connectionId, reason });

    const heartbeat = startHeartbeat(deps, leased, holder);
    let tokens: TokenSet;
    try {
      if (consentEnding) {
        throw new NeedsReauthError(
          `The ${provider.id} connection "${connectionId}" reaches the end of its consent; the user must connect again.`,
        );
      }
      tokens = await callProvider(heartbeat, () => renewTokens(deps, provider, current.tokens));
    } catch (error) {
      heartbeat.stop();
      if (error instanceof RenewalNotStarted) {
        await deps.store.releaseLease(leased, holder);
        return { connection: current, outcome: 'not_started' };
      }
      const outcome = await recordRenewalFailure(deps, provider, leased, holder, error);
      if (outcome === 'superseded') continue; // a newer write landed meanwhile: use it
      if (outcome === 'needs_reauth') {
        throw error instanceof NeedsReauthError
          ? error
          : new NeedsReauthError(
              `The ${provider.id} connection "${connectionId}" needs the user to connect again.`,
              { cause: error },
            );
      }
      throw error;
    }
    heartbeat.stop();
    return saveRenewedTokens(deps, provider, leased, tokens, holder);
  }
}

const runNow = <T>(call: () => Promise<T>): Promise<T> => call();

/** A holder's lease heartbeat; `lost` once a beat found the lease no longer ours. */
interface Heartbeat {
  readonly lost: boolean;
  stop(): void;
}

/**
 * Extends our lease every `heartbeatMs` until stopped. A beat refused by its condition means the
 * lease is gone (it lapsed and was taken over, or someone wrote): the beats stop and `lost` says
 * so; the fenced writes keep us from overwriting anyone. A beat the store fails is logged and the
 * next one tries again (the lease lapses only if every beat fails for a whole lease).
 */
function startHeartbeat(deps: RefreshDeps, item: ReadItem, holder: string): Heartbeat {
  const periodMs = deps.heartbeatMs ?? deps.leaseMs / 4;
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  const state = {
    lost: false,
    stop() {
      stopped = true;
      clearTimeout(timer);
    },
  };
  const beat = async () => {
    try {
      await deps.store.extendLease(item, holder, deps.now(), deps.leaseMs);
    } catch (error) {
      if (stopped) return; // our own final write raced the beat
      if (error instanceof VersionConflictError) {
        state.lost = true;
        deps.logger.warn('refresh lease lost while renewing', {
          provider: item.provider,
          connectionId: item.connectionId,
        });
        return;
      }
      deps.logger.warn('refresh lease heartbeat failed; trying again at the next beat', {
        provider: item.provider,
        connectionId: item.connectionId,
        error: (error as Error).name,
      });
    }
    if (!stopped) timer = setTimeout(beat, periodMs).unref();
  };
  timer = setTimeout(beat, periodMs).unref();
  return state;
}

/**
 * The first mint of a client-credentials connection, under our claim (heartbeat as for any
 * lease). The connection on success; undefined if our claim was taken over meanwhile (the caller
 * re-reads and waits for the new claimer). A failed mint deletes the claim, so the next caller
 * can claim at once, and is thrown.
 */
async function mintClaimed(
  deps: RefreshDeps,
  provider: ResolvedProvider,
  claim: Claim,
  holder: string,
  mint: () => Promise<TokenSet>,
  callProvider: (heartbeat: Heartbeat, call: () => Promise<TokenSet>) => Promise<TokenSet>,
): Promise<Connection | undefined> {
  const { connectionId } = claim;
  const heartbeat = startHeartbeat(deps, claim, holder);
  let tokens: TokenSet;
  try {
    tokens = await callProvider(heartbeat, mint);
  } catch (error) {
    heartbeat.stop();
    await deps.store.abandonClaim(claim, holder);
    if (error instanceof RenewalNotStarted) return undefined;
    throw error;
  }
  heartbeat.stop();
  const dueAt = nextDueAt(provider, tokens);
  let connection: Connection;
  try {
    connection = await withStoreRetries(deps, () =>
      deps.store.saveTokens(claim, tokens, deps.now(), {
        holder,
        ...(dueAt !== undefined ? { dueAt } : {}),
      }),
    );
  } catch (error) {
    if (error instanceof VersionConflictError) return undefined;
    throw error;
  }
  deps.logger.info('connection created', { provider: provider.id, connectionId });
  await publish(deps, 'Connection Created', connection);
  return connection;
}

/**
 * New tokens from the provider: refresh while a refresh token lives, else (or when the provider
 * refuses the refresh token) mint afresh where the kind can. A refresh answer without a refresh
 * token keeps the old one (RFC 6749 §6: the server MAY issue a new one).
 */
export async function renewTokens(
  deps: Pick<RefreshDeps, 'now' | 'logger'>,
  provider: ResolvedProvider,
  current: TokenSet | undefined,
): Promise<TokenSet> {
  const { kind, context } = provider;
  const refreshToken = current?.refreshToken;
  const refreshable =
    refreshToken !== undefined && (current?.refreshTokenExpiresAt ?? Infinity) > deps.now();
  if (refreshable && current && kind.refresh) {
    try {
      const renewed = await kind.refresh(context, current);
      if (renewed.refreshToken) return renewed;
      return {
        ...renewed,
        refreshToken,
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

/**
 * The failure policy. Transient failures (timeouts, 5xx, 429, garbage) and refusals a person
 * cannot fix (a client-credentials mint refused; for any kind, our client credentials, a quota
 * or a wrong URL refused) keep the connection active and due again after a backoff. Only a
 * user-consented connection whose grant is gone (the kind marked the refusal `grantRefused`, or
 * it cannot be renewed without the user) is marked needs_reauth and taken out of the due index.
 * The stored tokens are never touched.
 */
async function recordRenewalFailure(
  deps: RefreshDeps,
  provider: ResolvedProvider,
  leased: Connection,
  holder: string,
  error: unknown,
): Promise<'recorded' | 'needs_reauth' | 'superseded'> {
  const needsReauth =
    provider.kind.variant !== 'client-credentials' &&
    (error instanceof NeedsReauthError ||
      (error instanceof ProviderRejectedError && error.grantRefused === true));
  const publicError = toPublicError(error);
  deps.logger.warn('renewal failed', {
    provider: provider.id,
    connectionId: leased.connectionId,
    code: publicError.code,
    reason: describeError(error), // the full chain for operators; callers get publicError
  });
  const retryAt = deps.now() + retryDelayMs(leased.refreshFailures + 1);
  let recorded: Connection;
  try {
    recorded = await deps.store.recordFailure(
      leased,
      holder,
      { error: publicError, needsReauth, retryAt },
      deps.now(),
    );
  } catch (writeError) {
    if (writeError instanceof VersionConflictError) return 'superseded';
    throw writeError;
  }
  await publish(
    deps,
    needsReauth ? 'Connection Needs Reauth' : 'Connection Refresh Failed',
    recorded,
    publicError,
  );
  return needsReauth ? 'needs_reauth' : 'recorded';
}

/** Attempts at writing renewed tokens when the store itself fails (throttling, a blip). */
const SAVE_ATTEMPTS = 4;

/**
 * Stores renewed tokens. If our lease lapsed while the provider answered but nobody has written
 * *tokens* since, ours are still the newest: write them (fenced by version alone) rather than drop
 * them, since the provider may have rotated the refresh token. That holds even over a failure
 * record written meanwhile — a holder that took over and was refused the refresh token we had
 * already used, say, and marked the connection needs_reauth. If someone wrote tokens since, theirs
 * win. A failing store is retried: the provider may already have consumed the old refresh token.
 */
async function saveRenewedTokens(
  deps: RefreshDeps,
  provider: ResolvedProvider,
  leased: Connection,
  tokens: TokenSet,
  holder: string,
): Promise<RefreshResult> {
  const dueAt = nextDueAt(provider, tokens);
  const save = (current: Connection, fenceHolder?: string) =>
    withStoreRetries(deps, () =>
      deps.store.saveTokens(current, tokens, deps.now(), {
        ...(fenceHolder ? { holder: fenceHolder } : {}),
        ...(dueAt !== undefined ? { dueAt } : {}),
      }),
    );
  try {
    return { connection: await save(leased, holder), outcome: 'renewed' };
  } catch (error) {
    if (!(error instanceof VersionConflictError)) throw error;
  }
  for (;;) {
    const latest = await deps.store.get(leased.provider, leased.connectionId);
    if (!latest) {
      throw new NotFoundError(
        `The ${leased.provider} connection "${leased.connectionId}" was deleted.`,
      );
    }
    const tokensWrittenSince = latest.lastRefreshedAt !== leased.lastRefreshedAt;
    if (latest.version !== leased.version && tokensWrittenSince) {
      return { connection: latest, outcome: 'fresh' };
    }
    try {
      return { connection: await save(latest), outcome: 'renewed' };
    } catch (error) {
      if (!(error instanceof VersionConflictError)) throw error;
    }
  }
}

async function withStoreRetries<T>(deps: RefreshDeps, write: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt += 1) {
    try {
      return await write();
    } catch (error) {
      if (error instanceof VersionConflictError || attempt >= SAVE_ATTEMPTS) throw error;
      deps.logger.warn('writing renewed tokens failed; retrying', {
        attempt,
        error: (error as Error).name,
      });
      await (deps.sleep ?? sleep)(backoffMs(attempt + 2));
    }
  }
}

/** A kind that cannot mint, whose refresh token ends within the provider's re-consent lead. */
function consentRunningOut(provider: ResolvedProvider, tokens: TokenSet, now: number): boolean {
  return (
    !provider.kind.mint &&
    tokens.refreshTokenExpiresAt !== undefined &&
    tokens.refreshTokenExpiresAt - now <= provider.reauthLeadMs
  );
}

function assertUsable(connection: Connection): void {
  if (connection.status === 'needs_reauth') {
    throw new NeedsReauthError(
      `The ${connection.provider} connection "${connection.connectionId}" needs the user to connect again.`,
    );
  }
}

function publish(
  deps: RefreshDeps,
  type: LifecycleEvent['type'],
  connection: Connection,
  error?: { code: string; message: string },
): Promise<void> {
  return publishSafely(deps.events, deps.logger, {
    type,
    provider: connection.provider,
    connectionId: connection.connectionId,
    status: connection.status,
    ...(error ? { code: error.code, reason: error.message } : {}),
    at: deps.now(),
  });
}

/** 50 ms doubling to 800 ms, with full jitter: retries of a failing store do not go in step. */
function backoffMs(attempt: number): number {
  return Math.random() * Math.min(800, 50 * 2 ** attempt) + 10;
}
