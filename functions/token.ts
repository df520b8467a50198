import middy from '@middy/core';
import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { getBrokerCore } from '../shared/broker-core.ts';
import { checkTokenRequest } from '../shared/generated/request-checks.ts';
import { logger } from '../shared/logger.ts';
import { invokeErrors, observability } from '../shared/middleware.ts';
import { metricNames } from '../shared/observability.ts';
import { tokenRequestSchema, type TokenAnswer } from '../shared/token-service.ts';
import { validateRequest } from '../shared/validate.ts';

/**
 * `token` (Lambda invoke): `{ provider, connectionId?, minValiditySeconds?, forceRefresh?, sign? }`
 * → a valid token and its Authorization header (for OAuth 1.0a providers, `sign: { method, url,
 * body? }` → the signed header for exactly that request), or `{ ok: false, error: { code, message } }`.
 */
// No early-timeout timer (middy's default sets one per invocation): a caller's wait ends at
// waitMs (20 s), well inside the function's timeout, and a timeout fails the invocation either way.
export const handler = middy<unknown, TokenAnswer>({ timeoutEarlyInMillis: 0 })
  // logEvent off whatever POWERTOOLS_LOGGER_LOG_EVENT says: events carry tokens, codes, cookies.
  .use(injectLambdaContext(logger, { resetKeys: true, logEvent: false }))
  .use(observability())
  .use(invokeErrors(metricNames.tokenAnswers))
  .handler(async (event) =>
    getBrokerCore().tokens.getToken(validateRequest(tokenRequestSchema, event, checkTokenRequest)),
  );
