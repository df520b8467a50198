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
  /** Names of the fields the provider's secret must hold. */
  secretFields: readonly string[];
  /** Obtain a brand-new token set without a person (client credentials). */
  mint?(ctx: ProviderContext<C>): Promise<TokenSet>;
  /** Renew from a refresh token; may return no refresh token, the core keeps the old one. */
  refresh?(ctx: ProviderContext<C>, current: TokenSet): Promise<TokenSet>;
  /** The Authorization header value for the access token (default `Bearer <token>`). */
  authorization?(tokens: TokenSet): string;
}
