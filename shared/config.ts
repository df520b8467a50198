import * as Type from '@sinclair/typebox';
import { FormatRegistry, type Static, type TSchema } from '@sinclair/typebox';
// The two operations used, not the `Value` namespace: it pulls every value operation into each
// function's bundle (about 30 KB minified that Node parses on every cold start).
import { Errors } from '@sinclair/typebox/errors';
import { readConfigJson } from './config-file.ts';
import { Default } from '@sinclair/typebox/value';
import { ConfigError } from './errors.ts';
import type { CommonProviderConfig } from './providers/common.ts';
import { defaultCatalog, withCatalogEntry, type Catalog } from './providers/catalog.ts';
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
      Type.Object(
        { kind: Type.Optional(Type.String()), catalog: Type.Optional(Type.String()) },
        { additionalProperties: true },
      ),
      {
        description:
          'Provider id → its settings: `"catalog": "<id>"` plus overrides, or a `kind` with every field inline. The id names the secret and the connections.',
      },
    ),
  },
  { additionalProperties: false },
);

/**
 * The configuration as the TokenBroker construct ships it to the functions: parseConfig's
 * result (defaults applied, catalog entries merged, so every entry names its kind). The deployed
 * functions check the file with a check compiled from this schema
 * (shared/generated/request-checks.ts), not with parseConfig: see shared/deployed-config.ts.
 */
export const deployedConfigSchema = Type.Object(
  {
    ...configSchema.properties,
    providers: Type.Record(
      Type.String({ pattern: providerIdPattern }),
      Type.Object({ kind: Type.String({ minLength: 1 }) }, { additionalProperties: true }),
    ),
  },
  { additionalProperties: false },
);

export type ProviderConfig = CommonProviderConfig & Record<string, unknown>;
export type BrokerConfig = Omit<Static<typeof configSchema>, 'providers'> & {
  providers: Record<string, ProviderConfig>;
};

/** The JSON Schema editors use for broker.config.json (written by `npm run schema`). */
export function configJsonSchema(
  kinds: KindRegistry = defaultKinds,
  catalog: Catalog = defaultCatalog,
): Record<string, unknown> {
  const providerEntry = {
    oneOf: [
      ...Object.values(kinds).map((kind) => kind.configSchema),
      // A catalog entry with overrides; the merged entry is checked against its kind's schema.
      {
        type: 'object',
        required: ['catalog'],
        properties: { catalog: { enum: [...catalog.keys()] } },
        not: { required: ['kind'] },
      },
    ],
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
  const error = Errors(schema, value).First();
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
  /** The catalog entries may name (default: shared/providers/catalog). */
  catalog?: Catalog;
}

/** Validates a parsed config, applies defaults, and throws ConfigError naming the bad key. */
export function parseConfig(raw: unknown, options: ParseConfigOptions = {}): BrokerConfig {
  const source = options.source ?? 'broker.config.json';
  const kinds = options.kinds ?? defaultKinds;
  const catalog = options.catalog ?? defaultCatalog;
  const withDefaults = Default(configSchema, structuredClone(raw));
  const topError = firstError(configSchema, withDefaults, '');
  if (topError) throw new ConfigError(`${source}: ${topError}`);
  const config = withDefaults as BrokerConfig;
  for (const [id, given] of Object.entries(config.providers)) {
    if (!new RegExp(providerIdPattern).test(id)) {
      throw new ConfigError(
        `${source}: providers.${id}: a provider id is lower-case letters, digits, - and _`,
      );
    }
    const merged = withCatalogEntry(given, catalog, `providers.${id}`);
    if ('error' in merged) throw new ConfigError(`${source}: ${merged.error}`);
    const entry = withEnvironmentOverrides(merged.entry, given.catalog !== undefined, given);
    const kindName = typeof entry.kind === 'string' ? entry.kind : undefined;
    const kind = kindName && Object.hasOwn(kinds, kindName) ? kinds[kindName] : undefined;
    if (!kind) {
      const hint =
        kindName && catalog.has(kindName)
          ? ` (for the catalog entry: "catalog": "${kindName}")`
          : '';
      throw new ConfigError(
        `${source}: providers.${id}.kind: unknown kind "${kindName ?? ''}"${hint} (known: ${Object.keys(kinds).join(', ')})`,
      );
    }
    const entryError =
      firstError(kind.configSchema, entry, `providers.${id}`) ??
      environmentError(entry as ProviderConfig, `providers.${id}`) ??
      prefixed(`providers.${id}`, kind.checkEntry?.(entry as never));
    if (entryError) throw new ConfigError(`${source}: ${entryError}`);
    config.providers[id] = entry as ProviderConfig;
  }
  return config;
}

/**
 * The environment's overrides (`environmentOverrides[environment]`) applied: over the catalog's
 * fields, under the entry's own (a catalog-based entry); over the entry's fields (an inline one,
 * where both are the same author's).
 */
function withEnvironmentOverrides(
  merged: Record<string, unknown>,
  fromCatalog: boolean,
  own: Record<string, unknown>,
): Record<string, unknown> {
  const environment = (merged.environment ?? merged.defaultEnvironment) as string | undefined;
  const overrides = (merged.environmentOverrides as Record<string, Record<string, unknown>>)?.[
    environment ?? ''
  ];
  if (!overrides || typeof overrides !== 'object') return merged;
  return fromCatalog ? { ...merged, ...overrides, ...own } : { ...merged, ...overrides };
}

/** An environment the entry does not list is refused (sandbox: the offline runtime's). */
function environmentError(entry: ProviderConfig, where: string): string | undefined {
  const environment = entry.environment;
  if (environment === undefined || environment === 'sandbox' || entry.baseUrl) return undefined;
  const known = Object.keys(entry.environments ?? {});
  if (known.includes(environment)) return undefined;
  return `${where}.environment: unknown environment "${environment}" (known: ${[...known, 'sandbox'].join(', ')})`;
}

function prefixed(where: string, message: string | undefined): string | undefined {
  return message === undefined ? undefined : `${where}.${message}`;
}

/**
 * Reads the configuration once: `BROKER_CONFIG_JSON` (inline) or the file at `BROKER_CONFIG`
 * (default broker.config.json). In Lambda a relative path is taken from the function's code
 * directory (`LAMBDA_TASK_ROOT`), where the deployed configuration travels with the code.
 */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): BrokerConfig {
  const { json, source } = readConfigJson(env);
  return parseConfig(json, { source });
}
