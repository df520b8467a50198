import type { SignRequest } from './types.js';
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
/**
 * Normalises a request before the library sees it (RFC 5849 §3.4.1). `body`, when given, is an
 * `application/x-www-form-urlencoded` body, whose parameters are signed (§3.4.1.3.1, third
 * source); a caller sending any other body leaves it out, as it is not part of the signature.
 * Messages name the field, never its value: a URL may carry a token.
 */
export declare function normaliseRequest(request: SignRequest): NormalisedRequest;
/** The signature base string (§3.4.1.1) of a request with these protocol parameters. */
export declare function signatureBaseString(request: SignRequest, protocolParams: Record<string, string>): string;
/**
 * The `Authorization: OAuth …` header value for exactly this request (§3.5.1), HMAC signed
 * with the consumer secret and the token secret (§3.4.2).
 */
export declare function oauth1Authorization(request: SignRequest, credentials: OAuth1Credentials, options: OAuth1SignOptions): string;
/**
 * Reads a form-encoded OAuth answer (§2.1, §2.3: application/x-www-form-urlencoded) whatever its
 * Content-Type says: some servers label it text/html or text/plain.
 */
export declare function readOAuthForm(text: string): Record<string, string>;
