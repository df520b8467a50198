import { apiKey, basic } from './credentials.ts';
import { oauth1 } from './oauth1.ts';
import { oauth2 } from './oauth2.ts';
import { quicko } from './quicko.ts';
import type { ProviderKind, ProviderProtocol } from './types.ts';

// Each kind is typed by its own config; the broker only hands a kind an entry validated against
// that kind's schema, so erasing the parameter here is safe.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type AnyProviderKind = ProviderKind<any>;
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type AnyProviderProtocol = ProviderProtocol<any>;

/**
 * The kinds a broker knows, by name. It is passed in with the broker's dependencies
 * (`createBroker({ kinds })`, `parseConfig(raw, { kinds })`), so a test adds a kind to its own
 * broker without touching anyone else's.
 */
export type KindRegistry = Readonly<Record<string, AnyProviderKind>>;

/**
 * Every provider kind the broker ships. A new kind is one module added here; a new provider is a
 * catalog entry (shared/providers/catalog/), not a kind.
 */
export const defaultKinds: KindRegistry = Object.freeze({
  oauth2,
  oauth1,
  api_key: apiKey,
  basic,
  quicko,
});

/** The protocol of a validated entry (parseConfig has refused unknown kinds). */
export function protocolOf(
  entry: { kind: string },
  kinds: KindRegistry = defaultKinds,
): AnyProviderProtocol {
  const kind = kinds[entry.kind];
  if (!kind) throw new Error(`unknown provider kind ${entry.kind}`);
  return kind.protocol(entry);
}
