import middy from '@middy/core';
import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import type { Context } from 'aws-lambda';
import { getBrokerCore } from '../shared/broker-core.ts';
import { logger } from '../shared/logger.ts';
import { observability, refresherRunMetrics } from '../shared/middleware.ts';
import type { RefreshSummary } from '../shared/refresher.ts';

/**
 * `refresher` (EventBridge schedule, or invoked by hand with any payload): renews what falls due
 * before the next run and answers `{ due, refreshed, failed, needsReauth, skipped, durationMs }`.
 * A failure of the run itself (the table unreachable) is thrown, so the schedule's retries, its
 * dead-letter queue and the error alarm see it.
 */
export const handler = middy<unknown, RefreshSummary, Error, Context>()
  // logEvent off whatever POWERTOOLS_LOGGER_LOG_EVENT says: events carry tokens, codes, cookies.
  .use(injectLambdaContext(logger, { resetKeys: true, logEvent: false }))
  .use(observability())
  .use(refresherRunMetrics())
  .handler(async (_event, context) =>
    getBrokerCore().refresher.run({ remainingMs: () => context.getRemainingTimeInMillis() }),
  );
