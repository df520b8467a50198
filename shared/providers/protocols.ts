import { apiKey, basic } from './credentials.ts';
import { oauth1 } from './oauth1.ts';
import { oauth2 } from './oauth2.ts';
import { quicko } from './quicko.ts';
import type { KindProtocol, ProviderProtocol } from './types.ts';

// Each kind is typed by its own config; the broker only hands a kind an entry validated against
// that kind's schema, so erasing the parameter here is safe.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type AnyKindProtocol = KindProtocol<any>;
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type AnyProviderProtocol = ProviderProtocol<any>;

/**
 * The protocols of the kinds a broker knows, by kind name: what the deployed functions resolve
 * providers with (`resolveProviders`, `createBroker({ kinds })`). A full kind registry
 * (registry.ts: schemas too) is one of these.
 */
export type ProtocolRegistry = Readonly<Record<string, AnyKindProtocol>>;

/** The protocol of every kind the broker ships (their schemas: registry.ts `defaultKinds`). */
export const defaultProtocols = Object.freeze({
  oauth2,
  oauth1,
  api_key: apiKey,
  basic,
  quicko,
}) satisfies ProtocolRegistry;

/** The protocol of a validated entry (parseConfig has refused unknown kinds). */
export function protocolOf(
  entry: { kind: string },
  kinds: ProtocolRegistry = defaultProtocols,
): AnyProviderProtocol {
  const kind = kinds[entry.kind];
  if (!kind) throw new Error(`unknown provider kind ${entry.kind}`);
  return kind.protocol(entry);
}
