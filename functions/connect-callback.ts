import middy from '@middy/core';
import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2 } from 'aws-lambda';
import { parseCookie } from 'cookie';
import { getBroker } from '../shared/broker.ts';
import { returnToWith } from '../shared/connect/return-to.ts';
import { parseHttpApiEvent } from '../shared/http/http-api-event.ts';
import { pageErrors } from '../shared/http/page-errors.ts';
import { clearCookie, htmlPage, redirect, statusForCode } from '../shared/http/responses.ts';
import { logger } from '../shared/logger.ts';
import { observability } from '../shared/middleware.ts';

/**
 * `GET /callback/{provider}` (connect-callback), and `POST` from our credentials form: finds the
 * flow, checks this browser's cookie, consumes the flow once, exchanges and stores the tokens,
 * then sends the browser to `returnTo` with `status=connected` or `status=error&error=<code>` (or
 * shows a page when there is none).
 */
export const handler = middy<APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2>()
  // logEvent off whatever POWERTOOLS_LOGGER_LOG_EVENT says: events carry tokens, codes, cookies.
  .use(injectLambdaContext(logger, { resetKeys: true, logEvent: false }))
  .use(observability())
  .use(pageErrors())
  .handler(async (event) => {
    const request = parseHttpApiEvent(event, 'GET and POST /callback/{provider}');
    const connect = getBroker().connect;
    const cookies = parseCookie(request.cookies.join('; '));
    const submitted = event.requestContext.http.method === 'POST' ? formBody(event) : undefined;
    const outcome = await connect.completeFlow(
      request.pathParameters.provider ?? '',
      request.query,
      cookies,
      submitted,
    );

    const callbackUrl = new URL(connect.callbackUrl(outcome.provider));
    const clear = clearCookie(
      outcome.cookieName,
      callbackUrl.pathname,
      callbackUrl.protocol === 'https:',
    );
    const result: Record<string, string> = outcome.ok
      ? { status: 'connected' }
      : { status: 'error', error: outcome.error.code };
    if (outcome.returnTo) {
      return redirect(
        returnToWith(outcome.returnTo, {
          ...result,
          provider: outcome.provider,
          connection_id: outcome.connectionId,
        }),
        [clear],
      );
    }
    if (outcome.ok) {
      return htmlPage(
        200,
        'Connected',
        `Your ${outcome.provider} account is connected. You can close this window.`,
        [clear],
      );
    }
    return htmlPage(
      statusForCode(outcome.error.code),
      outcome.error.code === 'access_denied' ? 'Connection cancelled' : 'Connection failed',
      outcome.error.message,
      [clear],
    );
  });

/** The posted credentials form (application/x-www-form-urlencoded), each name once. */
function formBody(event: APIGatewayProxyEventV2): Record<string, string> {
  const text = event.isBase64Encoded
    ? Buffer.from(event.body ?? '', 'base64').toString('utf8')
    : (event.body ?? '');
  const fields: Record<string, string> = {};
  for (const [name, value] of new URLSearchParams(text)) {
    if (!Object.hasOwn(fields, name)) fields[name] = value;
  }
  return fields;
}
