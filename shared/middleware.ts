import type middy from '@middy/core';
import { isRefusal, toPublicError } from './errors.ts';
import { logger } from './logger.ts';

export interface InvokeErrorAnswer {
  ok: false;
  error: { code: string; message: string };
}

/**
 * Maps any error of an invoked function to `{ ok: false, error: { code, message } }`, the one
 * place where that happens. Only BrokerError messages reach the caller; anything else is logged
 * and answered as a generic internal_error.
 */
export function invokeErrors(): middy.MiddlewareObj<unknown, unknown> {
  return {
    onError: async (request) => {
      const error = request.error;
      if (isRefusal(error)) {
        logger.warn('request refused', { code: error.code, reason: error.message });
      } else {
        const { code } = toPublicError(error);
        logger.error('request failed', { code, error: describeError(error) });
      }
      const answer: InvokeErrorAnswer = { ok: false, error: toPublicError(error) };
      request.response = answer;
    },
  };
}

/**
 * What of an unexpected error goes into a log line: names and messages down the cause chain,
 * no stack of request data. Our own messages never carry tokens; SDK and node errors neither.
 */
export function describeError(error: unknown): string {
  const parts: string[] = [];
  for (let current = error, depth = 0; current && depth < 5; depth += 1) {
    if (current instanceof Error) {
      parts.push(`${current.name}: ${current.message}`);
      current = current.cause;
    } else {
      parts.push(String(current));
      break;
    }
  }
  return parts.join(' <- ');
}
