import { resolveProviderBaseUrl, type BrokerConfig } from '../config.ts';
import { UnknownProviderError } from '../errors.ts';
import type { SecretSource } from '../secrets.ts';
import { createProviderHttp, type ProviderHttpOptions } from './http.ts';
import { providerKinds, type AnyProviderKind } from './registry.ts';
import type { ProviderContext, SealedCache } from './types.ts';

/** A configured provider, wired once per container: its kind, settings and call context. */
export interface ResolvedProvider {
  id: string;
  kind: AnyProviderKind;
  /** Renew this long before the access token expires (ms). */
  leadMs: number;
  /** Ask for re-consent this long before a refresh token ends (ms; kinds that cannot mint). */
  reauthLeadMs: number;
  context: ProviderContext<never>;
}

export interface ProviderWiring {
  config: BrokerConfig;
  secrets: SecretSource;
  now: () => number;
  /** Where `environment: "sandbox"` points (the offline runtime's /sandbox). */
  sandboxBaseUrl: string;
  http?: Partial<ProviderHttpOptions>;
  /** The encrypted provider-wide cache of each provider (see SealedCache). */
  sealedCache: (providerId: string) => SealedCache;
}

export function resolveProviders(wiring: ProviderWiring): Map<string, ResolvedProvider> {
  const providers = new Map<string, ResolvedProvider>();
  for (const [id, entry] of Object.entries(wiring.config.providers)) {
    const kind = providerKinds[entry.kind]!; // parseConfig already refused unknown kinds
    providers.set(id, {
      id,
      kind,
      leadMs: (entry.refreshLeadSeconds ?? wiring.config.refresh.leadSeconds) * 1000,
      reauthLeadMs: (entry.reauthLeadSeconds ?? kind.reauthLeadSeconds ?? 0) * 1000,
      context: {
        providerId: id,
        config: entry as never,
        baseUrl: resolveProviderBaseUrl(entry, kind.hosts, wiring.sandboxBaseUrl),
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
