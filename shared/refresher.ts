import pLimit, { type LimitFunction } from 'p-limit';
import type { BrokerConfig } from './config.ts';
import {
  BrokerError,
  NeedsReauthError,
  NotFoundError,
  ProviderUnavailableError,
  VersionConflictError,
} from './errors.ts';
import type { ResolvedProvider } from './providers/resolve.ts';
import { nextDueAt, refreshConnection, RenewalNotStarted, type RefreshDeps } from './refresh.ts';
import { publishSafely } from './events.ts';
import {
  unreadableTokensError,
  type Connection,
  type UnreadableDue,
} from './store/connection-store.ts';
import { allDueShards } from './store/table.ts';

/** What one refresher run did; logged and returned. */
/**
 * The refresher's Lambda timeout: the configured stop margin (no new renewal starts that close to
 * the deadline, so in-flight ones can finish) plus four minutes of useful run time; 5 minutes with
 * the default 60 s margin, at most Lambda's 900 s. The stack and the offline runtime both use it.
 */
export function refresherTimeoutSeconds(config: Pick<BrokerConfig, 'refresh'>): number {
  return Math.min(900, config.refresh.stopBeforeTimeoutSeconds + 240);
}

export interface RefreshSummary {
  /** Connections found due before the next run (plus each provider's lead). */
  due: number;
  refreshed: number;
  /** Renewal failed; the connection stays active and due again after a backoff. */
  failed: number;
  needsReauth: number;
  /** Already fresh, renewed elsewhere meanwhile, or not started (time, provider outage). */
  skipped: number;
  durationMs: number;
}

export interface RefresherDeps extends RefreshDeps {
  config: BrokerConfig;
  providers: Map<string, ResolvedProvider>;
}

/** After this many transient failures in a row, a provider gets no more calls in this run. */
export const PROVIDER_FAILURE_LIMIT = 5;
/** Due items read per query page. */
const PAGE_SIZE = 100;
/** How far a connection whose tokens cannot be decrypted is set back (a person must look). */
export const UNREADABLE_POSTPONE_MS = 3600_000;

/**
 * The scheduled refresher: finds what falls due before the next run in the due index (Query per
 * shard, never Scan), and renews it through the same refresh protocol as the token function,
 * with bounded concurrency overall and per provider, so one provider's outage cannot starve the
 * others. It starts no new work close to its deadline.
 */
export class Refresher {
  constructor(private readonly deps: RefresherDeps) {}

  async run(options: { remainingMs: () => number }): Promise<RefreshSummary> {
    const { config, providers, store, now, logger } = this.deps;
    const started = now();
    const until = started + config.refresh.scheduleMinutes * 60_000;
    const stopMarginMs = config.refresh.stopBeforeTimeoutSeconds * 1000;
    const summary: RefreshSummary = {
      due: 0,
      refreshed: 0,
      failed: 0,
      needsReauth: 0,
      skipped: 0,
      durationMs: 0,
    };

    // The gates bound provider calls, not whole renewals: a renewal's store writes (the lease
    // before its call, the tokens after) overlap other renewals' calls. Each provider's calls pass
    // its own gate first, then the overall one, so a hanging provider holds at most its cap of
    // the overall slots; and at most three times its cap of its renewals are under way (leased or
    // writing) at once, so its backlog holds no more leases than that.
    const overallCalls = pLimit(config.refresh.concurrency);
    const gates = new Map<string, { renewals: LimitFunction; calls: LimitFunction }>();
    const gatesOf = (providerId: string) => {
      let gate = gates.get(providerId);
      if (!gate) {
        const cap = config.refresh.perProviderConcurrency;
        gate = { renewals: pLimit(3 * cap), calls: pLimit(cap) };
        gates.set(providerId, gate);
      }
      return gate;
    };
    const failuresInRow = new Map<string, number>();
    const inFlight = new Set<Promise<void>>();
    // Shard loops waiting for the backlog to shrink; each finished task wakes one. (Not
    // Promise.race(inFlight): every call adds a reaction to every task in flight, which at
    // 10,000 due connections cost a quarter of the run in microtasks and garbage; npm run bench.)
    const backlogWaiters: (() => void)[] = [];
    const outOfTime = () => options.remainingMs() < stopMarginMs;

    const renew = async (provider: ResolvedProvider, due: Connection): Promise<void> => {
      const stopped = () =>
        outOfTime() || (failuresInRow.get(provider.id) ?? 0) >= PROVIDER_FAILURE_LIMIT;
      if (stopped()) {
        summary.skipped += 1;
        return;
      }
      const calls = gatesOf(provider.id).calls;
      // Checked again once a slot is free: the provider may have failed meanwhile, or time run
      // out; the renewal then gives its lease back untouched. The call's outcome is counted
      // before its slot is freed, so the next call through the gate already knows it.
      const callSlot = <T>(call: () => Promise<T>): Promise<T> =>
        calls(() =>
          overallCalls(async () => {
            if (stopped()) throw new RenewalNotStarted();
            try {
              const result = await call();
              failuresInRow.set(provider.id, 0);
              return result;
            } catch (error) {
              if (error instanceof ProviderUnavailableError) {
                failuresInRow.set(provider.id, (failuresInRow.get(provider.id) ?? 0) + 1);
              }
              throw error;
            }
          }),
        );
      try {
        const { outcome, connection } = await refreshConnection(
          this.deps,
          provider,
          due.connectionId,
          {
            // Everything due before the next run: dueAt ≤ until means expiry ≤ until + lead.
            minValidityMs: until - now() + provider.leadMs,
            force: false,
            waitForLease: false,
            initial: due,
            callSlot,
          },
        );
        if (outcome === 'renewed' || outcome === 'created') summary.refreshed += 1;
        else summary.skipped += 1;
        if (outcome === 'fresh') await this.rescheduleIfEarly(provider, connection);
      } catch (error) {
        if (error instanceof NeedsReauthError) {
          summary.needsReauth += 1;
          return;
        }
        if (error instanceof NotFoundError) {
          summary.skipped += 1; // deleted since the due index was read
          return;
        }
        summary.failed += 1;
        if (!(error instanceof BrokerError)) {
          logger.error('refresh failed unexpectedly', {
            provider: provider.id,
            connectionId: due.connectionId,
            error: (error as Error).name,
          });
        }
      }
    };

    // Fan out over the shards; page through each; keep a bounded backlog so memory stays flat.
    await Promise.all(
      allDueShards().map(async (shard) => {
        let page: Record<string, unknown> | undefined;
        do {
          if (outOfTime()) return;
          const result = await store.queryDue(shard, until, {
            limit: PAGE_SIZE,
            ...(page ? { page } : {}),
          });
          page = result.nextPage;
          for (const unreadable of result.unreadable) {
            summary.due += 1;
            summary.failed += 1;
            await this.setAsideUnreadable(unreadable);
          }
          for (const due of result.connections) {
            summary.due += 1;
            const provider = providers.get(due.provider);
            if (!provider) {
              summary.skipped += 1; // a provider removed from the configuration
              continue;
            }
            const task: Promise<void> = gatesOf(provider.id)
              .renewals(() => renew(provider, due))
              .finally(() => {
                inFlight.delete(task);
                backlogWaiters.shift()?.();
              });
            inFlight.add(task);
          }
          while (inFlight.size > config.refresh.concurrency * 4) {
            await new Promise<void>((resolve) => backlogWaiters.push(resolve));
          }
        } while (page);
      }),
    );
    await Promise.all(inFlight);
    summary.durationMs = now() - started;
    logger.info('refresher run', { ...summary });
    return summary;
  }

  /**
   * A due connection whose stored tokens cannot be decrypted: no renewal can succeed until a
   * person restores the key or the connection is reconnected. Log it (ids and the error's name
   * only), move its due time an hour out so it stops heading its shard, and say so in an event.
   */
  private async setAsideUnreadable(item: UnreadableDue): Promise<void> {
    const { store, events, logger, now } = this.deps;
    const { provider, connectionId, version } = item;
    logger.error('stored tokens could not be decrypted', {
      provider,
      connectionId,
      error: item.errorName,
    });
    const at = now();
    try {
      await store.postponeUnreadable(
        provider,
        connectionId,
        version,
        at + UNREADABLE_POSTPONE_MS,
        at,
      );
    } catch (error) {
      // A newer write (a reconnect) stands; anything else is logged, and the next run tries again.
      if (error instanceof VersionConflictError) return;
      logger.error('setting aside an unreadable connection failed', {
        provider,
        connectionId,
        error: (error as Error).name,
      });
      return;
    }
    await publishSafely(events, logger, {
      type: 'Connection Refresh Failed',
      provider,
      connectionId,
      status: item.status,
      code: unreadableTokensError.code,
      reason: unreadableTokensError.message,
      at,
    });
  }

  /**
   * A connection that came up due but was still fresh (a token call's failed renewal set a short
   * backoff on a token with hours left, or another container renewed it meanwhile): set its due
   * time from its tokens, so the next runs do not read and skip it again and again.
   */
  private async rescheduleIfEarly(provider: ResolvedProvider, connection: Connection) {
    const dueAt = nextDueAt(provider, connection.tokens);
    if (dueAt === undefined || connection.dueAt === undefined || dueAt <= connection.dueAt) return;
    try {
      await this.deps.store.reschedule(connection, dueAt, this.deps.now());
    } catch (error) {
      if (!(error instanceof VersionConflictError)) throw error; // someone wrote since: theirs stands
    }
  }
}
