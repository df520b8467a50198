import { readFile } from 'node:fs/promises';
import {
  GetSecretValueCommand,
  ResourceNotFoundException,
  type SecretsManagerClient,
} from '@aws-sdk/client-secrets-manager';
import { LRUCache } from 'lru-cache';
import { BrokerError, ProviderMisconfiguredError } from './errors.ts';
import { isRecord } from './providers/http.ts';
import type { ProviderSecret } from './providers/types.ts';

/**
 * The value the stack puts in every field of a provider's secret but the generated one, until the
 * operator sets the real credentials (docs/deployment.md): a field holding it is not set.
 */
export const SECRET_PLACEHOLDER = 'REPLACE_ME';

/** Reads one provider's JSON secret. Adapters implement only this. */
export interface SecretBackend {
  /** Human-readable name of where the secret lives, for error messages (never its value). */
  describe(providerId: string): string;
  /** The parsed secret; undefined when there is none (no such secret, entry or file). */
  load(providerId: string): Promise<unknown>;
}

/** Secrets Manager: one secret per provider, named `<prefix>/<providerId>`. */
export class SecretsManagerBackend implements SecretBackend {
  constructor(
    private readonly client: SecretsManagerClient,
    private readonly prefix: string,
  ) {}
  describe(providerId: string): string {
    return `Secrets Manager secret ${this.prefix}/${providerId}`;
  }
  async load(providerId: string): Promise<unknown> {
    try {
      const out = await this.client.send(
        new GetSecretValueCommand({ SecretId: `${this.prefix}/${providerId}` }),
      );
      return parseWithoutEcho(out.SecretString ?? 'null');
    } catch (error) {
      if (error instanceof ResourceNotFoundException) return undefined;
      throw error;
    }
  }
}

/** Offline: one JSON file `{ "<providerId>": { … } }` (git-ignored, under .broker/ by default). */
export class SecretsFileBackend implements SecretBackend {
  constructor(private readonly path: string) {}
  describe(providerId: string): string {
    return `entry "${providerId}" of ${this.path}`;
  }
  async load(providerId: string): Promise<unknown> {
    let text: string;
    try {
      text = await readFile(this.path, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw error;
    }
    const file = parseWithoutEcho(text);
    return isRecord(file) && Object.hasOwn(file, providerId) ? file[providerId] : undefined;
  }
}

/**
 * JSON.parse's own error quotes the text it choked on, which here is a secret: replace it with one
 * that says nothing about the content.
 */
function parseWithoutEcho(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    throw new Error('The secret is not valid JSON');
  }
}

/**
 * Provider secrets, cached in a warm container for `ttlMs`. Concurrent reads share one fetch and a
 * failed fetch is never cached (lru-cache `fetch` semantics), so a fixed secret is seen at once.
 */
export class SecretSource {
  private readonly cache: LRUCache<string, ProviderSecret>;

  constructor(
    private readonly backend: SecretBackend,
    ttlMs = 5 * 60_000,
  ) {
    this.cache = new LRUCache<string, ProviderSecret>({
      max: 500,
      ttl: ttlMs,
      fetchMethod: (providerId) => this.fetchSecret(providerId),
    });
  }

  /**
   * The provider's secret, with `requiredFields` checked to be non-empty strings; a missing or
   * incomplete one is ProviderMisconfiguredError naming the fields (never a value).
   */
  async get(providerId: string, requiredFields: readonly string[]): Promise<ProviderSecret> {
    const secret = await this.cache.fetch(providerId);
    if (!secret) throw this.misconfigured(providerId, 'is missing');
    const missing = requiredFields.filter((field) => !secret[field]);
    const placeholders = requiredFields.filter((field) => secret[field] === SECRET_PLACEHOLDER);
    if (missing.length > 0 || placeholders.length > 0) {
      this.cache.delete(providerId);
      throw this.misconfigured(
        providerId,
        missing.length > 0
          ? `lacks ${missing.join(', ')}`
          : `still holds the ${SECRET_PLACEHOLDER} placeholder in ${placeholders.join(', ')}`,
      );
    }
    return secret;
  }

  private async fetchSecret(providerId: string): Promise<ProviderSecret> {
    let value: unknown;
    try {
      value = await this.backend.load(providerId);
    } catch (cause) {
      // The cause (an SDK or file error) goes to the logs; it never holds the secret's value.
      throw new BrokerError(
        'internal_error',
        `The broker could not read the ${this.backend.describe(providerId)}.`,
        { cause },
      );
    }
    if (value === undefined || value === null) throw this.misconfigured(providerId, 'is missing');
    if (!isRecord(value) || !Object.values(value).every((v) => typeof v === 'string')) {
      throw this.misconfigured(providerId, 'is not a JSON object of strings');
    }
    return value as ProviderSecret;
  }

  /** Where the secret lives goes to the logs (the cause), not to callers. */
  private misconfigured(providerId: string, problem: string): ProviderMisconfiguredError {
    return new ProviderMisconfiguredError(providerId, problem, {
      cause: new Error(`see the ${this.backend.describe(providerId)}`),
    });
  }
}
