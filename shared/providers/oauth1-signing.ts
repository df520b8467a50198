import { createHmac, randomBytes } from 'node:crypto';
import OAuth from 'oauth-1.0a';
import { InvalidRequestError } from '../errors.ts';
import type { SignRequest } from './types.ts';

/**
 * OAuth 1.0a request signing (RFC 5849 §3), HMAC-SHA1 or HMAC-SHA256, on the `oauth-1.0a` package.
 *
 * The library builds the signature base string, the signing key and the header well, but only
 * from input that is already normalised: it does not decode percent-encoded query names, lets a
 * form-body parameter overwrite a query parameter of the same name, and takes the base URI from
 * the URL as given (case, default port). RFC 5849 §3.1's own example fails with it as-is
 * (../shared/providers.md "OAuth 1.0a signing"). So `normaliseRequest` does §3.4.1.1–§3.4.1.3.1
 * here and hands the library a query-free base URI and every parameter decoded, repeated names as
 * arrays; the library then encodes, sorts and joins them (§3.4.1.3.2, §3.6), keys (§3.4.2) and
 * formats the header (§3.5.1).
 */

export interface OAuth1Credentials {
  consumerKey: string;
  consumerSecret: string;
  /** Temporary (request) or token (access) credentials; absent for the initiate request. */
  token?: string;
  /** Its secret; §2.1: the empty string when there is no token. */
  tokenSecret?: string;
}

/**
 * HMAC-SHA1 is RFC 5849 §3.4.2's; HMAC-SHA256 is the same construction with SHA-256, which
 * several providers ask for (the signature method name is theirs, not the RFC's).
 */
export type OAuth1SignatureMethod = 'HMAC-SHA1' | 'HMAC-SHA256';

export interface OAuth1SignOptions {
  /** Epoch ms; `oauth_timestamp` is its whole seconds (§3.3). */
  now: number;
  /** Default HMAC-SHA1. */
  signatureMethod?: OAuth1SignatureMethod;
  /** Further protocol parameters: `oauth_callback` (§2.1), `oauth_verifier` (§2.3). */
  protocolParams?: Record<string, string>;
  /** Default: 128 random bits. Fixed only to reproduce published vectors. */
  nonce?: string;
  /**
   * `oauth_version="1.0"` is OPTIONAL (§3.1); some providers' examples carry it, RFC 5849's do not.
   * Default true.
   */
  includeVersion?: boolean;
}

/** The request as RFC 5849 §3.4.1 sees it: method, base string URI, decoded parameters. */
export interface NormalisedRequest {
  /** §3.4.1.1 (1): upper case. */
  method: string;
  /** §3.4.1.2: scheme and host in lower case, default port dropped, no query or fragment. */
  baseUri: string;
  /** §3.4.1.3.1: query and form-body parameters, decoded; a repeated name keeps every value. */
  params: Record<string, string | string[]>;
}

/** What the library needs besides the consumer; its hash function is the HMAC on node:crypto. */
function signer(
  consumerKey: string,
  consumerSecret: string,
  method: OAuth1SignatureMethod = 'HMAC-SHA1',
): OAuth {
  const hash = method === 'HMAC-SHA256' ? 'sha256' : 'sha1';
  return new OAuth({
    consumer: { key: consumerKey, secret: consumerSecret },
    // The library's default is PLAINTEXT; §1.2 uses HMAC-SHA1 (§3.4.2).
    signature_method: method,
    hash_function: (baseString, key) => createHmac(hash, key).update(baseString).digest('base64'),
  });
}

/**
 * Normalises a request before the library sees it (RFC 5849 §3.4.1). `body`, when given, is an
 * `application/x-www-form-urlencoded` body, whose parameters are signed (§3.4.1.3.1, third
 * source); a caller sending any other body leaves it out, as it is not part of the signature.
 * Messages name the field, never its value: a URL may carry a token.
 */
export function normaliseRequest(request: SignRequest): NormalisedRequest {
  if (!/^[A-Za-z]{1,16}$/.test(request.method)) {
    throw new InvalidRequestError('sign.method must be an HTTP method name such as GET or POST.');
  }
  let url: URL;
  try {
    url = new URL(request.url);
  } catch {
    throw new InvalidRequestError('sign.url must be an absolute http(s) URL.');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new InvalidRequestError('sign.url must be an absolute http(s) URL.');
  }
  if (url.username || url.password) {
    throw new InvalidRequestError('sign.url must not carry user information.');
  }
  // §3.4.1.2: the WHATWG serialisation lower-cases scheme and host, drops the scheme's default
  // port and normalises the path, which is also exactly what fetch puts on the wire.
  const baseUri = `${url.protocol}//${url.host}${url.pathname}`;

  // §3.4.1.3.1: the query, and a form body, parsed as application/x-www-form-urlencoded and
  // decoded per HTML 4.01 §17.13.4 ("+" is a space), every pair kept. A body is prefixed with
  // "&" only because the URLSearchParams constructor would drop a leading "?".
  const pairs = [
    ...url.searchParams,
    ...(request.body ? new URLSearchParams(`&${request.body}`) : []),
  ];
  const params: Record<string, string | string[]> = {};
  for (const [name, value] of pairs) {
    // §2 and §3.5: protocol parameters go in the header only, each once; the broker adds them.
    if (name.startsWith('oauth_')) {
      throw new InvalidRequestError(
        'The request to sign must not carry oauth_* parameters; the broker adds them.',
      );
    }
    // The library merges parameters into plain objects, where this name would set the prototype.
    if (name === '__proto__') {
      throw new InvalidRequestError('The request to sign has a parameter that cannot be signed.');
    }
    const existing = Object.hasOwn(params, name) ? params[name] : undefined;
    if (existing === undefined) params[name] = value;
    else if (Array.isArray(existing)) existing.push(value);
    else params[name] = [existing, value];
  }
  return { method: request.method.toUpperCase(), baseUri, params };
}

/** The protocol parameters of a request, before its signature (§3.1 step 1). */
function protocolParameters(
  credentials: OAuth1Credentials,
  options: OAuth1SignOptions,
): Record<string, string> {
  const params: Record<string, string> = {
    oauth_consumer_key: credentials.consumerKey,
    oauth_nonce: options.nonce ?? randomBytes(16).toString('hex'),
    oauth_signature_method: options.signatureMethod ?? 'HMAC-SHA1',
    oauth_timestamp: String(Math.floor(options.now / 1000)),
    ...(options.includeVersion === false ? {} : { oauth_version: '1.0' }),
    ...(credentials.token !== undefined ? { oauth_token: credentials.token } : {}),
  };
  for (const [name, value] of Object.entries(options.protocolParams ?? {})) {
    if (!name.startsWith('oauth_') || name in params || name === 'oauth_signature') {
      throw new Error(`${name} is not an extra OAuth protocol parameter`);
    }
    params[name] = value;
  }
  return params;
}

/** The signature base string (§3.4.1.1) of a request with these protocol parameters. */
export function signatureBaseString(
  request: SignRequest,
  protocolParams: Record<string, string>,
): string {
  const normalised = normaliseRequest(request);
  return signer('', '').getBaseString(
    { method: normalised.method, url: normalised.baseUri, data: normalised.params },
    // Copied: the library merges the request's parameters into the object it is given.
    { ...protocolParams } as unknown as OAuth.Data,
  );
}

/**
 * The `Authorization: OAuth …` header value for exactly this request (§3.5.1), HMAC signed
 * with the consumer secret and the token secret (§3.4.2).
 */
export function oauth1Authorization(
  request: SignRequest,
  credentials: OAuth1Credentials,
  options: OAuth1SignOptions,
): string {
  const normalised = normaliseRequest(request);
  const oauth = signer(
    credentials.consumerKey,
    credentials.consumerSecret,
    options.signatureMethod,
  );
  const protocol = protocolParameters(credentials, options);
  const signature = oauth.getSignature(
    { method: normalised.method, url: normalised.baseUri, data: normalised.params },
    credentials.tokenSecret ?? '',
    { ...protocol } as unknown as OAuth.Data,
  );
  return oauth.toHeader({
    ...protocol,
    oauth_signature: signature,
  } as unknown as OAuth.Authorization).Authorization;
}

/**
 * Reads a form-encoded OAuth answer (§2.1, §2.3: application/x-www-form-urlencoded) whatever its
 * Content-Type says: some servers label it text/html or text/plain.
 */
export function readOAuthForm(text: string): Record<string, string> {
  const fields: Record<string, string> = {};
  for (const [name, value] of new URLSearchParams(`&${text.trim()}`)) {
    if (!Object.hasOwn(fields, name)) fields[name] = value;
  }
  return fields;
}
