import * as Type from '@sinclair/typebox';
// Check alone, not the Value namespace: that would pull every value operation into the bundle.
import { Check } from '@sinclair/typebox/value';
import { InvalidRequestError } from '../errors.ts';

/** What the connect routes read of an API Gateway HTTP API event (payload format 2.0). */
const httpApiEventSchema = Type.Object({
  version: Type.Literal('2.0'),
  requestContext: Type.Object({ http: Type.Object({ method: Type.String() }) }),
  pathParameters: Type.Optional(Type.Record(Type.String(), Type.String())),
  queryStringParameters: Type.Optional(Type.Record(Type.String(), Type.String())),
  cookies: Type.Optional(Type.Array(Type.String())),
});

/** A connect route's request: its path parameters, query (repeats comma-joined) and cookies. */
export interface HttpApiRequest {
  pathParameters: Record<string, string>;
  query: Record<string, string>;
  cookies: string[];
}

/**
 * Checks that a connect route's handler was given an HTTP API event (someone may invoke the
 * function directly with any payload) and returns the parts it reads. Anything else is
 * `invalid_request` with a message that says what the function takes, never a crash.
 */
export function parseHttpApiEvent(event: unknown, route: string): HttpApiRequest {
  if (!Check(httpApiEventSchema, event)) {
    throw new InvalidRequestError(
      `Invalid request: not an API Gateway HTTP API event (payload format 2.0); this function serves ${route} through the broker's HTTP API.`,
    );
  }
  return {
    pathParameters: event.pathParameters ?? {},
    query: event.queryStringParameters ?? {},
    cookies: event.cookies ?? [],
  };
}
