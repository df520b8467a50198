import middy from '@middy/core';
import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2 } from 'aws-lambda';
import { getBroker } from '../shared/broker.ts';
import { parseHttpApiEvent } from '../shared/http/http-api-event.ts';
import { pageErrors } from '../shared/http/page-errors.ts';
import { credentialsFormPage, redirect, setCookie } from '../shared/http/responses.ts';
import { logger } from '../shared/logger.ts';
import { observability } from '../shared/middleware.ts';

/**
 * `GET /connect/{provider}?session=…` (connect-start): checks the connect session, records the
 * flow, binds it to this browser with a cookie and sends the browser to the provider's consent
 * (or, for api_key / basic providers, shows our credentials form).
 */
export const handler = middy<APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2>()
  // logEvent off whatever POWERTOOLS_LOGGER_LOG_EVENT says: events carry tokens, codes, cookies.
  .use(injectLambdaContext(logger, { resetKeys: true, logEvent: false }))
  .use(observability())
  .use(pageErrors())
  .handler(async (event) => {
    const request = parseHttpApiEvent(event, 'GET /connect/{provider}');
    const started = await getBroker().connect.startFlow(
      request.pathParameters.provider ?? '',
      request.query.session,
    );
    if ('form' in started) return credentialsFormPage(started.form, [setCookie(started.cookie)]);
    return redirect(started.authorizationUrl, [setCookie(started.cookie)]);
  });
