/**
 * Whether `url` falls under one of the URL prefixes. Compared as parsed URLs, not as strings: the
 * origin must be identical (so `https://app.example.com.evil.net` never matches
 * `https://app.example.com`) and the path must be the prefix's path or below it. URLs with user
 * info, or not http(s), never match; nor does a path with a dot-segment in any form a server or
 * a proxy in front of it might resolve (see hasDotSegment).
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
  if (hasDotSegment(target.pathname)) return false;
  return prefixes.some((prefix) => {
    const base = new URL(prefix);
    if (base.origin !== target.origin) return false;
    const basePath = base.pathname.endsWith('/') ? base.pathname : `${base.pathname}/`;
    return target.pathname === base.pathname || target.pathname.startsWith(basePath);
  });
}

/** Rounds of %-decoding tried; a path still encoded after that is nobody's legitimate path. */
const DECODE_ROUNDS = 4;

/**
 * The URL parser resolves `..`, `%2e%2e` and `\` itself, but leaves `..%2F`, `..%5C`, `..;/`
 * (path parameters, as Tomcat and Jetty read them) and double encoding (`%252e%252e%252f`) in
 * the path, where a server or proxy that decodes once more climbs out of the allowed prefix.
 * So: decode repeatedly, split on `/` and `\`, drop `;…` parameters, and look for `.` or `..`.
 * A path that does not decode (malformed or overlong UTF-8, `%c0%ae`) is refused too, and one
 * with a control character (`.%00.`: some servers drop it), which no real path holds.
 */
function hasDotSegment(pathname: string): boolean {
  let path = pathname;
  for (let round = 0; round <= DECODE_ROUNDS; round += 1) {
    const segments = path.split(/[/\\]/).map((segment) => segment.split(';')[0]);
    if (segments.some((segment) => segment === '.' || segment === '..')) return true;
    // eslint-disable-next-line no-control-regex -- control characters are what it looks for
    if (/[\x00-\x1f\x7f]/.test(path)) return true;
    let decoded: string;
    try {
      decoded = decodeURIComponent(path);
    } catch {
      return true;
    }
    if (decoded === path) return false;
    path = decoded;
  }
  return true;
}
