import middy from '@middy/core';
import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { getBroker } from '../shared/broker.ts';
import {
  parseConnectionsRequest,
  type ConnectionsAnswer,
} from '../shared/connect/connections-api.ts';
import { logger } from '../shared/logger.ts';
import { invokeErrors, observability } from '../shared/middleware.ts';
import { metricNames } from '../shared/observability.ts';

/**
 * `connections` (Lambda invoke), for the team's backend: `createConnectSession`, `get`, `list`,
 * `delete`. Answers carry status and expiry times, never a token.
 */
export const handler = middy<unknown, ConnectionsAnswer>()
  // logEvent off whatever POWERTOOLS_LOGGER_LOG_EVENT says: events carry tokens, codes, cookies.
  .use(injectLambdaContext(logger, { resetKeys: true, logEvent: false }))
  .use(observability())
  .use(invokeErrors(metricNames.connectionsAnswers))
  .handler(async (event) => getBroker().connections.handle(parseConnectionsRequest(event)));
