import { InvalidRequestError } from '../errors.ts';
import { isUnderUrlPrefix } from '../url-prefix.ts';

/** Whether `returnTo` falls under one of the allowed prefixes (see isUnderUrlPrefix). */
export function isAllowedReturnTo(returnTo: string, allowed: readonly string[]): boolean {
  return isUnderUrlPrefix(returnTo, allowed);
}

export function assertAllowedReturnTo(returnTo: string, allowed: readonly string[]): void {
  if (!isAllowedReturnTo(returnTo, allowed)) {
    throw new InvalidRequestError(
      'Invalid request: returnTo: not under any allowed return URL (allowedReturnTo in broker.config.json).',
    );
  }
}

/** `returnTo` with the flow's outcome added as query parameters. */
export function returnToWith(returnTo: string, outcome: Record<string, string>): string {
  const url = new URL(returnTo);
  for (const [name, value] of Object.entries(outcome)) url.searchParams.set(name, value);
  return url.toString();
}
