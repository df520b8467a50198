/** What the `token` function answers (shared/token-service.ts); the client reads these. */

/** The answer for a bearer-style provider: the token itself and its ready-made header. */
export interface AccessTokenAnswer {
  ok: true;
  provider: string;
  connectionId: string;
  tokenType: string;
  accessToken: string;
  /** ISO 8601; null when the token does not expire. */
  expiresAt: string | null;
  /** The ready-made Authorization header value. */
  authorization: string;
  /**
   * Every header a call to the provider's API needs: Authorization, plus any the entry declares
   * (`headers`, e.g. Notion-Version) or the kind adds.
   */
  headers: Record<string, string>;
  /** The connection's metadata (the entry's `metadata`: Salesforce instance_url…), never a secret. */
  metadata?: Record<string, string>;
}

/**
 * The answer for an OAuth 1.0a provider (a `sign` request): only the signed header. The consumer
 * secret and the token secret never leave the broker, and neither does the access token: it is
 * not secret under OAuth 1.0a (the header carries it as `oauth_token`), but a caller has no use
 * for it besides that header, so the answer stays minimal. The credentials do not expire; the
 * header is good for that one request (its nonce and timestamp), so it is never cached.
 */
export interface SignedRequestAnswer {
  ok: true;
  provider: string;
  connectionId: string;
  /** "OAuth". */
  tokenType: string;
  /** `OAuth oauth_consumer_key="…", …, oauth_signature="…"` for exactly the requested call. */
  authorization: string;
  metadata?: Record<string, string>;
}

/**
 * The answer for an api_key / basic provider: the headers the API wants, built from the stored
 * credentials (which have no token of their own and do not expire).
 */
export interface CredentialHeadersAnswer {
  ok: true;
  provider: string;
  connectionId: string;
  /** "ApiKey" or "Basic". */
  tokenType: string;
  headers: Record<string, string>;
}

export type TokenAnswer = AccessTokenAnswer | SignedRequestAnswer | CredentialHeadersAnswer;
