import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { FormatRegistry, Type, type Static, type TSchema } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { ConfigError } from './errors.ts';
import type { CommonProviderConfig } from './providers/common.ts';
import { defaultKinds, type KindRegistry } from './providers/registry.ts';

// TypeBox checks only the formats it is told about: without this, every `format: 'uri'` field
// (baseUrl, consentUrl, the oauth2 endpoints) refuses any value ("Unknown format").
if (!FormatRegistry.Has('uri')) FormatRegistry.Set('uri', (value) => URL.canParse(value));

export const providerIdPattern = '^[a-z0-9][a-z0-9_-]{0,62}$';

const refreshSchema = Type.Object(
  {
    leadSeconds: Type.Integer({
      minimum: 0,
      maximum: 86_400,
      default: 300,
      description: 'Renew a token this long before it expires, unless a provider says otherwise.',
    }),
    scheduleMinutes: Type.Integer({
      minimum: 1,
      maximum: 1440,
      default: 5,
      description: 'How often the scheduled refresher runs.',
    }),
    concurrency: Type.Integer({
      minimum: 1,
      maximum: 200,
      default: 10,
      description: 'Refreshes in flight at once in one refresher run.',
    }),
    perProviderConcurrency: Type.Integer({
      minimum: 1,
      maximum: 200,
      default: 4,
      description: "At most this many of one provider's refreshes in flight at once in a run.",
    }),
    stopBeforeTimeoutSeconds: Type.Integer({
      minimum: 5,
      maximum: 600,
      default: 60,
      description: 'The refresher starts no new work this close to its Lambda timeout.',
    }),
  },
  { additionalProperties: false, default: {} },
);

const connectSchema = Type.Object(
  {
    sessionTtlSeconds: Type.Integer({
      minimum: 60,
      maximum: 86_400,
      default: 1800,
      description: 'How long a connect session URL stays usable (single use).',
    }),
    flowTtlSeconds: Type.Integer({
      minimum: 60,
      maximum: 3600,
      default: 600,
      description: 'How long a person has to finish consent at the provider.',
    }),
  },
  { additionalProperties: false, default: {} },
);

/** The top level of broker.config.json. Provider entries are checked per kind (see below). */
export const configSchema = Type.Object(
  {
    $schema: Type.Optional(Type.String()),
    publicBaseUrl: Type.Optional(
      Type.String({
        pattern: '^https?://',
        description:
          'Public URL of the HTTP routes (connect, callback). In AWS the stack sets it; locally it defaults to http://localhost:$PORT.',
      }),
    ),
    secretsPrefix: Type.String({
      pattern: '^[A-Za-z0-9/_+=.@-]+$',
      default: 'oauth-token-broker',
      description: 'Secrets Manager names are <secretsPrefix>/<providerId>.',
    }),
    allowedReturnTo: Type.Array(Type.String({ pattern: '^https?://' }), {
      default: [],
      description: 'URL prefixes a connect flow may send the browser back to.',
    }),
    refresh: refreshSchema,
    connect: connectSchema,
    providers: Type.Record(
      Type.String({ pattern: providerIdPattern }),
      Type.Object({ kind: Type.String() }, { additionalProperties: true }),
      { description: 'Provider id → its settings; the id names the secret and the connections.' },
    ),
  },
  { additionalProperties: false },
);

export type ProviderConfig = CommonProviderConfig & Record<string, unknown>;
export type BrokerConfig = Omit<Static<typeof configSchema>, 'providers'> & {
  providers: Record<string, ProviderConfig>;
};

/** The JSON Schema editors use for broker.config.json (written by `npm run schema`). */
export function configJsonSchema(kinds: KindRegistry = defaultKinds): Record<string, unknown> {
  const providerEntry = {
    oneOf: Object.values(kinds).map((kind) => kind.configSchema),
  };
  return {
    $schema: 'http://json-schema.org/draft-07/schema#',
    title: 'oauth-token-broker configuration',
    ...JSON.parse(JSON.stringify(configSchema)),
    properties: {
      ...JSON.parse(JSON.stringify(configSchema.properties)),
      providers: {
        ...JSON.parse(JSON.stringify(configSchema.properties.providers)),
        patternProperties: { [providerIdPattern]: providerEntry },
        additionalProperties: false,
      },
    },
  };
}

function firstError(schema: TSchema, value: unknown, where: string): string | undefined {
  const error = Value.Errors(schema, value).First();
  if (!error) return undefined;
  const path = error.path.replace(/^\//, '').replaceAll('/', '.');
  const key = [where, path].filter(Boolean).join('.');
  return `${key || '(root)'}: ${error.message}`;
}

export interface ParseConfigOptions {
  /** Names the config in errors (default broker.config.json). */
  source?: string;
  /** The kinds entries may name (default: the shipped ones). */
  kinds?: KindRegistry;
}

/** Validates a parsed config, applies defaults, and throws ConfigError naming the bad key. */
export function parseConfig(raw: unknown, options: ParseConfigOptions = {}): BrokerConfig {
  const source = options.source ?? 'broker.config.json';
  const kinds = options.kinds ?? defaultKinds;
  const withDefaults = Value.Default(configSchema, structuredClone(raw));
  const topError = firstError(configSchema, withDefaults, '');
  if (topError) throw new ConfigError(`${source}: ${topError}`);
  const config = withDefaults as BrokerConfig;
  for (const [id, entry] of Object.entries(config.providers)) {
    if (!new RegExp(providerIdPattern).test(id)) {
      throw new ConfigError(
        `${source}: providers.${id}: a provider id is lower-case letters, digits, - and _`,
      );
    }
    const kind = Object.hasOwn(kinds, entry.kind) ? kinds[entry.kind] : undefined;
    if (!kind) {
      throw new ConfigError(
        `${source}: providers.${id}.kind: unknown kind "${entry.kind}" (known: ${Object.keys(kinds).join(', ')})`,
      );
    }
    const entryError = firstError(kind.configSchema, entry, `providers.${id}`);
    if (entryError) throw new ConfigError(`${source}: ${entryError}`);
  }
  return config;
}

/**
 * Reads the configuration once: `BROKER_CONFIG_JSON` (inline, as a deployment may pass it) or the
 * file at `BROKER_CONFIG` (default ./broker.config.json).
 */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): BrokerConfig {
  if (env.BROKER_CONFIG_JSON)
    return parseConfig(parseJsonText(env.BROKER_CONFIG_JSON, 'BROKER_CONFIG_JSON'), {
      source: 'BROKER_CONFIG_JSON',
    });
  const path = resolve(env.BROKER_CONFIG ?? 'broker.config.json');
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (cause) {
    throw new ConfigError(
      `Cannot read the configuration file ${path}: ${(cause as Error).message}`,
    );
  }
  return parseConfig(parseJsonText(text, path), { source: path });
}

function parseJsonText(text: string, source: string): unknown {
  try {
    return JSON.parse(text);
  } catch (cause) {
    throw new ConfigError(`${source}: not valid JSON (${(cause as Error).message})`);
  }
}

/**
 * The provider's API base URL: an explicit `baseUrl`, else the documented host of its
 * `environment`, else (environment "sandbox") the offline runtime's sandbox for that kind.
 */
export function resolveProviderBaseUrl(
  provider: ProviderConfig,
  hosts: Record<string, string>,
  sandboxBaseUrl: string,
): string {
  const url =
    provider.baseUrl ??
    (provider.environment === 'sandbox'
      ? `${sandboxBaseUrl}/${provider.kind}`
      : hosts[provider.environment ?? '']);
  if (!url) {
    // A kind with no documented hosts (oauth2) keeps every URL in its own entry: no base URL.
    if (Object.keys(hosts).length === 0 && provider.environment === undefined) return '';
    throw new ConfigError(
      `providers: kind ${provider.kind} has no host for environment "${provider.environment}"; set baseUrl`,
    );
  }
  return url.replace(/\/+$/, '');
}
