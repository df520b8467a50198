import type { Static, TSchema } from '@sinclair/typebox';
import { Errors } from '@sinclair/typebox/errors';
import { InvalidRequestError } from './errors.ts';

/**
 * Checks a caller's payload against a schema; the error names the first bad field and never
 * echoes its value (which could be a token). `precompiled` is the schema's check generated ahead
 * of time (shared/generated/request-checks.ts): a payload it accepts costs one plain function
 * call; the schema is walked only to explain a refusal.
 */
export function validateRequest<T extends TSchema>(
  schema: T,
  payload: unknown,
  precompiled?: (value: unknown) => boolean,
): Static<T> {
  if (typeof payload !== 'object' || payload === null || Array.isArray(payload)) {
    throw new InvalidRequestError('The request must be a JSON object.');
  }
  if (precompiled?.(payload)) return payload as Static<T>;
  const error = Errors(schema, payload).First();
  if (error) {
    const field = error.path.replace(/^\//, '').replaceAll('/', '.') || 'request';
    const message = error.message.replace(/"[^"]*"/g, '').trim();
    throw new InvalidRequestError(`Invalid request: ${field}: ${message}.`);
  }
  if (precompiled) throw new InvalidRequestError('Invalid request.'); // a stale check: see its test
  return payload as Static<T>;
}
