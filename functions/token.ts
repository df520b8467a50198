import middy from '@middy/core';
import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { getBrokerCore } from '../shared/broker-core.ts';
import { checkRequest } from '../shared/check-request.ts';
import { checkTokenRequest } from '../shared/generated/request-checks.ts';
import { logger } from '../shared/logger.ts';
import { invokeErrors, observability } from '../shared/middleware.ts';
import { metricNames } from '../shared/observability.ts';
import type { TokenAnswer } from '../shared/token-service.ts';

/** The request's schema, loaded only to explain a refusal (TypeBox comes with it). */
const tokenRequestSchema = async () =>
  (await import('../shared/token-request.ts')).tokenRequestSchema;

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
  .handler(async (event) => {
    // The request first: a bad one is the caller's mistake whatever state the container is in.
    const request = await checkRequest(event, checkTokenRequest, tokenRequestSchema);
    return getBrokerCore().tokens.getToken(request);
  });
