import type { ProviderConfig } from '../config.ts';
import { ConfigError } from '../errors.ts';

/**
 * The provider's base URL ({baseUrl} in its URLs): an explicit `baseUrl`, else its environment's
 * (`environment`, else `defaultEnvironment`) from `environments`, else for environment "sandbox"
 * the offline runtime's sandbox of its catalog entry. Empty when the entry has no environments
 * (every URL absolute).
 */
export function resolveProviderBaseUrl(provider: ProviderConfig, sandboxBaseUrl: string): string {
  const environment = provider.environment ?? provider.defaultEnvironment;
  const url =
    provider.baseUrl ??
    provider.environments?.[environment ?? ''] ??
    (environment === 'sandbox'
      ? `${sandboxBaseUrl}/${provider.catalog ?? provider.kind}`
      : undefined);
  if (!url) {
    if (environment === undefined) return '';
    throw new ConfigError(
      `providers: no base URL for environment "${environment}" of kind ${provider.kind}; set baseUrl`,
    );
  }
  return url.replace(/\/+$/, '');
}
