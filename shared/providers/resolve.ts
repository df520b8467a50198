import type { BrokerConfig } from '../config.ts';
import { resolveProviderBaseUrl } from './base-url.ts';
import { ConfigError, UnknownProviderError } from '../errors.ts';
import type { SecretSource } from '../secrets.ts';
import { createProviderHttp, type ProviderHttpOptions } from './http.ts';
import { defaultProtocols, type AnyProviderProtocol, type ProtocolRegistry } from './protocols.ts';
import type { ProviderContext, SealedCache } from './types.ts';

/** A configured provider, wired once per container: its kind, settings and call context. */
export interface ResolvedProvider {
  id: string;
  /** The protocol of its kind for this entry: one variant of ProviderProtocol. */
  kind: AnyProviderProtocol;
  /** Renew this long before the access token expires (ms). */
  leadMs: number;
  /** Ask for re-consent this long before a refresh token ends (ms; kinds that cannot mint). */
  reauthLeadMs: number;
  /** The entry's static `headers`, handed out with every token (identifiers, never secrets). */
  headers?: Record<string, string>;
  context: ProviderContext<never>;
}

export interface ProviderWiring {
  config: BrokerConfig;
  /** The kinds the config's entries name (default: the shipped ones). */
  kinds?: ProtocolRegistry;
  secrets: SecretSource;
  now: () => number;
  /** Where `environment: "sandbox"` points (the offline runtime's /sandbox/<catalog id>). */
  sandboxBaseUrl: string;
  http?: Partial<ProviderHttpOptions>;
  /** The encrypted provider-wide cache of each provider (see SealedCache). */
  sealedCache: (providerId: string) => SealedCache;
}

export function resolveProviders(wiring: ProviderWiring): Map<string, ResolvedProvider> {
  const providers = new Map<string, ResolvedProvider>();
  const kinds: ProtocolRegistry = wiring.kinds ?? defaultProtocols;
  for (const [id, entry] of Object.entries(wiring.config.providers)) {
    const definition = kinds[entry.kind];
    // parseConfig refuses unknown kinds; a config parsed with other kinds than these is a bug.
    if (!definition) throw new ConfigError(`providers.${id}.kind: unknown kind "${entry.kind}"`);
    const kind = definition.protocol(entry);
    providers.set(id, {
      id,
      kind,
      leadMs: (entry.refreshLeadSeconds ?? wiring.config.refresh.leadSeconds) * 1000,
      reauthLeadMs: (entry.reauthLeadSeconds ?? kind.reauthLeadSeconds ?? 0) * 1000,
      // Templated headers ({credentials.…}) are the credential kinds' own to fill.
      headers: Object.fromEntries(
        Object.entries(entry.headers ?? {}).filter(([, value]) => !value.includes('{')),
      ),
      context: {
        providerId: id,
        config: entry as never,
        baseUrl: resolveProviderBaseUrl(entry, wiring.sandboxBaseUrl),
        secret: () => wiring.secrets.get(id, kind.secretFields),
        http: createProviderHttp({
          ...wiring.http,
          ...(entry.timeoutMs ? { timeoutMs: entry.timeoutMs } : {}),
        }),
        now: wiring.now,
        sealedCache: wiring.sealedCache(id),
      },
    });
  }
  return providers;
}

export function getProvider(
  providers: Map<string, ResolvedProvider>,
  id: string,
): ResolvedProvider {
  const provider = providers.get(id);
  if (!provider) throw new UnknownProviderError(id);
  return provider;
}
