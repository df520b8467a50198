import type { Static, TSchema } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { InvalidRequestError } from './errors.ts';

/**
 * Checks a caller's payload against a schema; the error names the first bad field and never
 * echoes its value (which could be a token).
 */
export function validateRequest<T extends TSchema>(schema: T, payload: unknown): Static<T> {
  if (typeof payload !== 'object' || payload === null || Array.isArray(payload)) {
    throw new InvalidRequestError('The request must be a JSON object.');
  }
  const error = Value.Errors(schema, payload).First();
  if (error) {
    const field = error.path.replace(/^\//, '').replaceAll('/', '.') || 'request';
    const message = error.message.replace(/"[^"]*"/g, '').trim();
    throw new InvalidRequestError(`Invalid request: ${field}: ${message}.`);
  }
  return payload as Static<T>;
}
