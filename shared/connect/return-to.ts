import { InvalidRequestError } from '../errors.ts';

/**
 * Whether `returnTo` falls under one of the allowed prefixes. Compared as parsed URLs, not as
 * strings: the origin must be identical (so `https://app.example.com.evil.net` never matches
 * `https://app.example.com`) and the path must be the prefix's path or below it.
 */
export function isAllowedReturnTo(returnTo: string, allowed: readonly string[]): boolean {
  let target: URL;
  try {
    target = new URL(returnTo);
  } catch {
    return false;
  }
  if (target.protocol !== 'https:' && target.protocol !== 'http:') return false;
  if (target.username || target.password) return false;
  return allowed.some((prefix) => {
    const base = new URL(prefix);
    if (base.origin !== target.origin) return false;
    const basePath = base.pathname.endsWith('/') ? base.pathname : `${base.pathname}/`;
    return target.pathname === base.pathname || target.pathname.startsWith(basePath);
  });
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
