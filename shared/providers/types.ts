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
  /**
   * True when `expiresAt` is the entry's `defaultExpiresInSeconds`, not the provider's word: the
   * token may stop working earlier, so such connections are flagged and renewed on forceRefresh.
   */
  expiryAssumed?: boolean;
  /** The per-connection values given at createConnectSession (`{subdomain}`…), for later calls. */
  connectionParams?: Record<string, string>;
  /** Non-secret facts about the connection kept from the token answer or callback (`metadata`). */
  metadata?: Record<string, string>;
  /** api_key / basic: the values a person or the platform team supplied (encrypted at rest). */
  credentials?: Record<string, string>;
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
   * A small provider-wide cache whose values are stored encrypted (e.g. an API-user token a kind obtains first),
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

/**
 * A kind's verdict on a callback before its flow is consumed: `ok` when it carries what the
 * exchange needs (or is the provider's well-formed report of a refusal), else why not. The
 * message is shown to the person: name parameters, never their values.
 */
export type CallbackCheck = { ok: true } | { ok: false; message: string };

export interface ConsentStartInput {
  /**
   * Our callback URL for this provider (`<public base>/callback/<providerId>`). A kind whose
   * provider returns no `state` (or not always) adds `state` to it as a query parameter.
   */
  callbackUrl: string;
  /** Random flow id (≥ 128 bits); OAuth 2.0 kinds send it as `state`. */
  state: string;
  /** Per-connection values given at createConnectSession, checked against the entry. */
  connectionParams?: Record<string, string>;
}

export interface ConsentStart {
  /** Where the browser goes to consent. */
  authorizationUrl: string;
  /**
   * Secret values the callback will need (PKCE verifier, OAuth 1.0a request-token secret); the
   * core stores them encrypted with the flow and hands them back once.
   */
  flowSecrets?: Record<string, string>;
  /** The exact callback URL used, if the kind changed it (adding `state`); default input's. */
  callbackUrl?: string;
}

export interface ConsentCallbackInput {
  params: CallbackParams;
  /** The same callback URL the start step used (OAuth 2.0 sends it again as redirect_uri). */
  callbackUrl: string;
  state: string;
  flowSecrets: Record<string, string>;
  connectionParams?: Record<string, string>;
}

/** An outgoing request to sign with OAuth 1.0a. */
export interface SignRequest {
  method: string;
  url: string;
  /** Form-encoded body (its parameters are signed); other bodies are not part of the signature. */
  body?: string;
}

/** What every variant of a kind's protocol declares. */
interface ProtocolBase<C> {
  /** The kind's name, as entries name it (`"kind": "oauth2"`). */
  kind: string;
  /** Names of the fields the provider's secret must hold. */
  secretFields: readonly string[];
  /**
   * Default for `reauthLeadSeconds`: how long before a refresh token's known end the connection
   * turns to needs_reauth, so the person can consent again before anything breaks.
   */
  reauthLeadSeconds?: number;
  /** The Authorization header value for the access token (default `<tokenType> <token>`). */
  authorization?(tokens: TokenSet): string;
  /**
   * The headers that carry the access token on API calls, for APIs that want it somewhere else
   * than Authorization (default: `Authorization` with the value above).
   */
  tokenHeaders?(tokens: TokenSet): Record<string, string>;
  /**
   * Headers besides Authorization that the provider's API wants on every call (e.g. an
   * `x-api-key` and `x-api-version`). Identifiers only: never a secret.
   */
  apiHeaders?(ctx: ProviderContext<C>): Promise<Record<string, string>>;
}

/** Consent hooks: the browser flow (see docs/architecture.md, "Connect flows"). */
interface ConsentHooks<C> {
  /** Start consent: where to send the browser, and what to keep (encrypted) for the callback. */
  startConsent(ctx: ProviderContext<C>, input: ConsentStartInput): Promise<ConsentStart>;
  /**
   * Checks a callback's required parameters (a request token, OAuth 1.0a's oauth_verifier, the
   * configured `iss`) before the core consumes its flow, so a malformed callback is refused and
   * the person can still finish with the real one.
   */
  checkCallback(ctx: ProviderContext<C>, params: CallbackParams): CallbackCheck;
  /**
   * Finish consent from the callback's parameters. Throws AccessDeniedError when the person
   * declined or cancelled, InvalidRequestError for a malformed callback, provider errors as usual.
   */
  completeConsent(ctx: ProviderContext<C>, input: ConsentCallbackInput): Promise<TokenSet>;
}

/**
 * The broker obtains tokens with no person involved, for the single connection id "default"
 * (RFC 6749 §4.4).
 */
export interface ClientCredentialsProtocol<C = never> extends ProtocolBase<C> {
  variant: 'client-credentials';
  /** Obtain a brand-new token set. */
  mint(ctx: ProviderContext<C>): Promise<TokenSet>;
  /** Renew from a refresh token, where the server gave one; the core mints when it is refused. */
  refresh?(ctx: ProviderContext<C>, current: TokenSet): Promise<TokenSet>;
  startConsent?: never;
  checkCallback?: never;
  completeConsent?: never;
  sign?: never;
}

/** Tokens come from a person's consent flow; the token answer hands out the access token. */
export interface UserConsentProtocol<C = never> extends ProtocolBase<C>, ConsentHooks<C> {
  variant: 'user-consent';
  /** Renew from a refresh token; may return no refresh token, the core keeps the old one. */
  refresh?(ctx: ProviderContext<C>, current: TokenSet): Promise<TokenSet>;
  mint?: never;
  sign?: never;
}

/**
 * Credentials from a person's consent that never leave the broker (OAuth 1.0a): the token answer
 * is a signed header for one request. Such credentials do not expire: nothing to refresh.
 */
export interface RequestSigningProtocol<C = never> extends ProtocolBase<C>, ConsentHooks<C> {
  variant: 'request-signing';
  /** The signed `Authorization` header for exactly this request; secrets never leave the broker. */
  sign(ctx: ProviderContext<C>, tokens: TokenSet, request: SignRequest): Promise<string>;
  mint?: never;
  refresh?: never;
}

/**
 * Credentials a person (on the hosted form) or the platform team (the connections function)
 * supplies instead of an OAuth grant: an API key, a username and password. They do not expire;
 * the token answer is the headers the API wants.
 */
export interface ProvidedCredentialsProtocol<C = never> extends ProtocolBase<C> {
  variant: 'provided-credentials';
  /** Checks supplied values against the entry and, if it says how, with the API; the tokens to store. */
  accept(ctx: ProviderContext<C>, given: Record<string, string>): Promise<TokenSet>;
  /** The headers for one API call with the stored credentials. */
  headers(ctx: ProviderContext<C>, tokens: TokenSet): Record<string, string>;
  checkCallback?: never;
  mint?: never;
  refresh?: never;
  startConsent?: never;
  completeConsent?: never;
  sign?: never;
}

/**
 * What the core calls for one configured provider: a discriminated union, so each variant's hooks
 * are required and the compiler says what a kind must implement. The core branches only on the
 * variant, never on a provider's name.
 */
export type ProviderProtocol<C = never> =
  | ClientCredentialsProtocol<C>
  | UserConsentProtocol<C>
  | RequestSigningProtocol<C>
  | ProvidedCredentialsProtocol<C>;

/** The variants with a browser consent flow. */
export type ConsentProtocol<C = never> = UserConsentProtocol<C> | RequestSigningProtocol<C>;

export function hasConsentFlow<C>(protocol: ProviderProtocol<C>): protocol is ConsentProtocol<C> {
  return protocol.variant === 'user-consent' || protocol.variant === 'request-signing';
}

/**
 * What a deployed function needs of a provider *kind*: the protocol of one validated entry, the
 * same few steps for every provider of that kind (`shared/providers/<kind>.ts`). Its schema is
 * not here: deployed functions read a configuration validated at synth (shared/deployed-config.ts),
 * so neither the schemas nor TypeBox's builders are in their bundles.
 */
export interface KindProtocol<C extends { kind: string } = { kind: string }> {
  kind: C['kind'];
  /** The protocol of one validated entry (a kind may pick its variant from the entry). */
  protocol(config: C): ProviderProtocol<C>;
}

/**
 * How a kind's entries in broker.config.json are checked (`shared/providers/config/<kind>.ts`):
 * by parseConfig, at synth, in the offline runtime and in tests.
 */
export interface KindConfig<C> {
  /** JSON Schema (TypeBox) of this kind's entry in broker.config.json. */
  configSchema: TObject;
  /** Rules across the entry's fields the schema cannot say; the message names the field. */
  checkEntry?(config: C): string | undefined;
}

/** A provider kind whole: its protocol and the schema of its config entries. */
export interface ProviderKind<C extends { kind: string } = { kind: string }>
  extends KindProtocol<C>, KindConfig<C> {}
