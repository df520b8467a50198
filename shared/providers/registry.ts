import { apiKeyConfig, basicConfig } from './config/credentials.ts';
import { oauth1Config } from './config/oauth1.ts';
import { oauth2Config } from './config/oauth2.ts';
import { quickoConfig } from './config/quicko.ts';
import { defaultProtocols } from './protocols.ts';
import type { KindConfig, KindProtocol, ProviderKind } from './types.ts';

// See AnyKindProtocol (protocols.ts): each kind is typed by its own config.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type AnyProviderKind = ProviderKind<any>;

/**
 * The kinds a broker knows, by name, each with its config schema: what parseConfig checks entries
 * against (`parseConfig(raw, { kinds })`), and, as a ProtocolRegistry, what a broker resolves
 * providers with (`createBroker({ kinds })`), so a test adds a kind to its own broker and config
 * without touching anyone else's.
 */
export type KindRegistry = Readonly<Record<string, AnyProviderKind>>;

/** One kind's two modules, its protocol and its config schema, checked to agree on its config. */
function providerKind<C extends { kind: string }>(
  protocol: KindProtocol<C>,
  config: KindConfig<C>,
): ProviderKind<C> {
  return { ...protocol, ...config };
}

/**
 * Every provider kind the broker ships, schemas included (for parseConfig, the config's JSON
 * Schema and the README's field reference). A new kind is two modules: its protocol
 * (`shared/providers/<kind>.ts`, listed in `defaultProtocols`) and its entry schema
 * (`shared/providers/config/<kind>.ts`), paired here. A new provider is a catalog entry
 * (shared/providers/catalog/), not a kind.
 */
export const defaultKinds: KindRegistry = Object.freeze({
  oauth2: providerKind(defaultProtocols.oauth2, oauth2Config),
  oauth1: providerKind(defaultProtocols.oauth1, oauth1Config),
  api_key: providerKind(defaultProtocols.api_key, apiKeyConfig),
  basic: providerKind(defaultProtocols.basic, basicConfig),
  quicko: providerKind(defaultProtocols.quicko, quickoConfig),
} satisfies Record<keyof typeof defaultProtocols, AnyProviderKind>);
