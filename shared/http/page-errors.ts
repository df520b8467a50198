import type middy from '@middy/core';
import type { APIGatewayProxyStructuredResultV2 } from 'aws-lambda';
import { isRefusal, toPublicError } from '../errors.ts';
import { logger } from '../logger.ts';
import { describeError } from '../middleware.ts';
import { htmlPage, statusForCode } from './responses.ts';

/**
 * For the browser routes: any error becomes a plain page with a status from its code (a 400 for a
 * refused link or flow, never a 5xx for bad input). Only BrokerError messages are shown.
 */
export function pageErrors(): middy.MiddlewareObj<unknown, APIGatewayProxyStructuredResultV2> {
  return {
    onError: async (request) => {
      const error = request.error;
      if (isRefusal(error)) {
        logger.warn('browser request refused', { code: error.code, reason: error.message });
      } else {
        logger.error('browser request failed', { error: describeError(error) });
      }
      const { code, message } = toPublicError(error);
      request.response = htmlPage(statusForCode(code), titleFor(code), message);
    },
  };
}

function titleFor(code: string): string {
  switch (code) {
    case 'provider_unavailable':
      return 'The provider is not answering';
    case 'provider_misconfigured':
      return 'This provider is not set up yet';
    case 'internal_error':
      return 'Something went wrong';
    default:
      return 'This link cannot be used';
  }
}
