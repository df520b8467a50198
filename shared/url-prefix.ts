/**
 * Whether `url` falls under one of the URL prefixes. Compared as parsed URLs, not as strings: the
 * origin must be identical (so `https://app.example.com.evil.net` never matches
 * `https://app.example.com`) and the path must be the prefix's path or below it. URLs with user
 * info, or not http(s), never match.
 */
export function isUnderUrlPrefix(url: string, prefixes: readonly string[]): boolean {
  let target: URL;
  try {
    target = new URL(url);
  } catch {
    return false;
  }
  if (target.protocol !== 'https:' && target.protocol !== 'http:') return false;
  if (target.username || target.password) return false;
  return prefixes.some((prefix) => {
    const base = new URL(prefix);
    if (base.origin !== target.origin) return false;
    const basePath = base.pathname.endsWith('/') ? base.pathname : `${base.pathname}/`;
    return target.pathname === base.pathname || target.pathname.startsWith(basePath);
  });
}
