import type middy from '@middy/core';
import { isRefusal, toPublicError } from './errors.ts';
import { logger } from './logger.ts';
import { countAnswer, countRefresherRun, tracer } from './observability.ts';
import type { RefreshSummary } from './refresher.ts';

export interface InvokeErrorAnswer {
  ok: false;
  error: { code: string; message: string };
}

// Loaded with the Tracer, only where it traces (shared/observability.ts says why).
const captureLambdaHandler = tracer
  ? (await import('@aws-lambda-powertools/tracer/middleware')).captureLambdaHandler
  : undefined;

/**
 * The invocation as an X-Ray trace (Powertools Tracer), never with its response (it carries
 * tokens); no middleware where tracing is off.
 */
export function observability(): middy.MiddlewareObj<unknown, unknown>[] {
  if (!tracer || !captureLambdaHandler) return [];
  return [
    captureLambdaHandler(tracer, { captureResponse: false }) as middy.MiddlewareObj<
      unknown,
      unknown
    >,
  ];
}

/** Thrown so Lambda counts an invocation as failed: a generic message, the details in the log. */
export class BrokerInternalError extends Error {
  constructor() {
    super('The broker failed unexpectedly; see its logs.');
    this.name = 'BrokerInternalError';
  }
}

/**
 * Maps any error of an invoked function to `{ ok: false, error: { code, message } }`, the one
 * place where that happens, and counts every answer by code (`metricName`, dimension `code`).
 * Only BrokerError messages reach the caller. Anything else is an internal_error: logged, and the
 * invocation fails (BrokerInternalError, a generic message), so Lambda's Errors metric and its
 * alarm see it; the client reports it as TokenBrokerError `internal_error`.
 */
export function invokeErrors(metricName: string): middy.MiddlewareObj<unknown, unknown> {
  return {
    after: async (request) => {
      countAnswer(metricName, answerCode(request.response));
    },
    onError: async (request) => {
      const error = request.error;
      const answer: InvokeErrorAnswer = { ok: false, error: toPublicError(error) };
      const { code } = answer.error;
      countAnswer(metricName, code);
      if (isRefusal(error)) {
        logger.warn('request refused', { code, reason: error.message });
      } else {
        // Ours to fix (provider_misconfigured: a secret to set; internal_error: anything else).
        logger.error('request failed', { code, error: describeError(error) });
      }
      if (code === 'internal_error') {
        request.error = new BrokerInternalError();
        return;
      }
      request.response = answer;
    },
  };
}

/** The refresher's run summary as metrics, with the heartbeat the alarm waits for. */
export function refresherRunMetrics(): middy.MiddlewareObj<unknown, RefreshSummary> {
  return {
    after: async (request) => {
      countRefresherRun(request.response!);
    },
  };
}

function answerCode(answer: unknown): string {
  const record = answer as { ok?: unknown; error?: { code?: unknown } } | null;
  if (record?.ok === false && typeof record.error?.code === 'string') return record.error.code;
  return 'ok';
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
