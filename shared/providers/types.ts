import type { TObject } from '@sinclair/typebox';
import type { ProviderHttp } from './http.ts';

/** What a provider gave us, as the broker keeps it (always encrypted at rest). */
export interface TokenSet {
  accessToken: string;
  /** Normalised token type as the provider names it ("Bearer" for every OAuth 2.0 kind). */
  tokenType: string;
  /** Epoch ms; absent when the token does not expire (OAuth 1.0a). */
  expiresAt?: number;
  refreshToken?: string;
  /** Epoch ms; absent when the provider does not say. */
  refreshTokenExpiresAt?: number;
  /** OAuth 1.0a token secret. */
  tokenSecret?: string;
}

/** The per-provider JSON secret (`<prefix>/<providerId>` in Secrets Manager). */
export type ProviderSecret = Record<string, string>;

/** Everything a kind's steps may use; built by the core, never by the kind. */
export interface ProviderContext<C> {
  providerId: string;
  config: C;
  /** Resolved base URL of the provider's API (environment or explicit `baseUrl`). */
  baseUrl: string;
  secret(): Promise<ProviderSecret>;
  http: ProviderHttp;
  now(): number;
  /**
   * A small provider-wide cache whose values are stored encrypted (e.g. Quicko's API-user token),
   * shared by every container. Values are strings; `expiresAt` is epoch ms.
   */
  sealedCache: SealedCache;
}

export interface SealedCache {
  get(name: string): Promise<string | undefined>;
  put(name: string, value: string, expiresAt: number): Promise<void>;
}

/** The query parameters of a provider's redirect back to our callback route. */
export type CallbackParams = Record<string, string>;

export interface ConsentStartInput {
  /**
   * Our callback URL for this provider (`<public base>/callback/<providerId>`). A kind whose
   * provider returns no `state` adds `state` to it as a query parameter (Quicko).
   */
  callbackUrl: string;
  /** Random flow id (≥ 128 bits); OAuth 2.0 kinds send it as `state`. */
  state: string;
}

export interface ConsentStart {
  /** Where the browser goes to consent. */
  authorizationUrl: string;
  /**
   * Secret values the callback will need (PKCE verifier, OAuth 1.0a request-token secret); the
   * core stores them encrypted with the flow and hands them back once.
   */
  flowSecrets?: Record<string, string>;
  /**
   * When the provider's callback carries its own handle instead of our state (OAuth 1.0a
   * `oauth_token`), that value; the core finds the flow by its hash. Default: our `state`.
   */
  callbackHandle?: string;
  /** The exact callback URL used, if the kind changed it (Quicko adds `state`); default input's. */
  callbackUrl?: string;
}

export interface ConsentCallbackInput {
  params: CallbackParams;
  /** The same callback URL the start step used (OAuth 2.0 sends it again as redirect_uri). */
  callbackUrl: string;
  state: string;
  flowSecrets: Record<string, string>;
}

/** An outgoing request to sign with OAuth 1.0a. */
export interface SignRequest {
  method: string;
  url: string;
  /** Form-encoded body (its parameters are signed); other bodies are not part of the signature. */
  body?: string;
}

/**
 * A provider *kind*: one module that implements the same few steps for every provider of that
 * kind. The core calls these hooks and never branches on a provider's name.
 */
export interface ProviderKind<C extends { kind: string } = { kind: string }> {
  kind: C['kind'];
  /** JSON Schema (TypeBox) of this kind's entry in broker.config.json. */
  configSchema: TObject;
  /**
   * `client_credentials`: the broker can obtain tokens with no person involved, for the single
   * connection id "default". `user_consent`: tokens come from a person's consent flow.
   */
  grant: 'client_credentials' | 'user_consent';
  /** Documented hosts by environment name. */
  hosts: Record<string, string>;
  /**
   * Default for `reauthLeadSeconds`: how long before a refresh token's known end the connection
   * turns to needs_reauth, so the person can consent again before anything breaks.
   */
  reauthLeadSeconds?: number;
  /** Names of the fields the provider's secret must hold. */
  secretFields: readonly string[];
  /** Obtain a brand-new token set without a person (client credentials). */
  mint?(ctx: ProviderContext<C>): Promise<TokenSet>;
  /** Renew from a refresh token; may return no refresh token, the core keeps the old one. */
  refresh?(ctx: ProviderContext<C>, current: TokenSet): Promise<TokenSet>;
  /** The Authorization header value for the access token (default `Bearer <token>`). */
  authorization?(tokens: TokenSet): string;
  /**
   * Headers besides Authorization that the provider's API wants on every call (Quicko: its
   * `x-api-key` and `x-api-version`). Identifiers only: never a secret.
   */
  apiHeaders?(ctx: ProviderContext<C>): Promise<Record<string, string>>;

  // --- user_consent kinds: the browser flow (see docs/architecture.md, "Connect flows") ---
  /** Start consent: where to send the browser, and what to keep (encrypted) for the callback. */
  startConsent?(ctx: ProviderContext<C>, input: ConsentStartInput): Promise<ConsentStart>;
  /**
   * The flow handle the provider's callback carries: `params.state` by default; OAuth 1.0a uses
   * `oauth_token`. Undefined when it carries none.
   */
  callbackHandle?(params: CallbackParams): string | undefined;
  /**
   * Finish consent from the callback's parameters. Throws AccessDeniedError when the person
   * declined or cancelled, InvalidRequestError for a malformed callback, provider errors as usual.
   */
  completeConsent?(ctx: ProviderContext<C>, input: ConsentCallbackInput): Promise<TokenSet>;
  /**
   * OAuth 1.0a: the signed `Authorization: OAuth …` header for exactly this request. Secrets
   * never leave the broker; only the header does.
   */
  sign?(ctx: ProviderContext<C>, tokens: TokenSet, request: SignRequest): Promise<string>;
}
