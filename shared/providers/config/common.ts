import * as Type from '@sinclair/typebox';
import type { TSchema } from '@sinclair/typebox';

// The kinds' entry schemas (this folder) serve parseConfig: at synth, offline and in tests. No
// deployed function imports them (registry.ts; shared/deployed-config.ts).

/**
 * Plain http only on loopback, for a server the tests (or a developer) run locally; tokens and
 * client secrets never cross a network unencrypted.
 */
export const secureUrlPattern =
  '^(https://|http://(localhost|127\\.0\\.0\\.1|\\[::1\\])([:/?#]|$))';

/** A URL that may start with, or hold, `{placeholders}` (see fillTemplate). */
export const urlTemplate = (description: string) =>
  Type.String({
    pattern: `(${secureUrlPattern}|^\\{[A-Za-z][A-Za-z0-9_.]*\\})`,
    maxLength: 2048,
    description,
  });

const identifier = '^[A-Za-z][A-Za-z0-9_]{0,63}$';

/** A per-connection value's declaration (`connectionParams`). */
const connectionParam = Type.Object(
  {
    description: Type.String({ maxLength: 256, description: 'What the value is, for people.' }),
    pattern: Type.Optional(
      Type.String({
        maxLength: 256,
        description: 'Regular expression the value must match (anchor it).',
      }),
    ),
  },
  { additionalProperties: false },
);

/**
 * Fields every provider entry may carry, whatever its kind: where the provider is (environments,
 * baseUrl), the per-connection values its URLs need, its API, and the broker's own settings.
 * A catalog entry (`shared/providers/catalog/<id>.json`) holds the provider's facts; an entry in
 * broker.config.json names it with `catalog` and overrides what it must.
 */
export const commonProviderFields = {
  catalog: Type.Optional(
    Type.String({
      pattern: '^[a-z0-9][a-z0-9-]{0,62}$',
      description:
        'The catalog entry this provider comes from (shared/providers/catalog/<id>.json); the other fields override it.',
    }),
  ),
  displayName: Type.Optional(
    Type.String({ maxLength: 128, description: 'The provider as people name it.' }),
  ),
  environments: Type.Optional(
    Type.Record(Type.String({ pattern: identifier }), Type.String({ pattern: secureUrlPattern }), {
      description:
        'Environment name → the base URL that {baseUrl} stands for in the URLs of this entry.',
    }),
  ),
  environmentOverrides: Type.Optional(
    Type.Record(
      Type.String({ pattern: identifier }),
      Type.Record(Type.String({ pattern: identifier }), Type.Unknown()),
      {
        description:
          'Environment name → fields that differ in that environment (e.g. an authorize page the sandbox serves at another path).',
      },
    ),
  ),
  defaultEnvironment: Type.Optional(
    Type.String({
      pattern: identifier,
      description: 'The environment used when the entry names none.',
    }),
  ),
  environment: Type.Optional(
    Type.String({
      pattern: identifier,
      description:
        'Which of `environments` to use. "sandbox", when the entry lists no such environment, is the offline runtime\'s sandbox of this catalog entry (npm start).',
    }),
  ),
  baseUrl: Type.Optional(
    Type.String({
      format: 'uri',
      pattern: '^https?://',
      description: 'Overrides the environment host: any production, staging, sandbox or mock URL.',
    }),
  ),
  apiBaseUrl: Type.Optional(
    urlTemplate(
      "Base URL of the provider's API (OAuth 1.0a signs requests under it only; api_key/basic verify against it). May use {baseUrl}, {metadata.<name>} and connection params.",
    ),
  ),
  headers: Type.Optional(
    Type.Record(
      Type.String({ pattern: '^[A-Za-z0-9-]{1,64}$' }),
      Type.String({ maxLength: 1024 }),
      {
        description:
          'Headers the API wants on every call, handed out with the token (e.g. Notion-Version). api_key entries may use {credentials.<field>}.',
      },
    ),
  ),
  connectionParams: Type.Optional(
    Type.Record(Type.String({ pattern: identifier }), connectionParam, {
      description:
        'Per-connection values given to createConnectSession (`params`) and used in {templates} of this entry, e.g. {subdomain}, {tenant}, {shop}.',
    }),
  ),
  params: Type.Optional(
    Type.Record(Type.String({ pattern: identifier }), Type.String({ maxLength: 256 }), {
      description:
        'Values for connectionParams fixed for every connection of this provider (e.g. the Okta domain of a client-credentials entry).',
    }),
  ),
  docs: Type.Optional(
    Type.Record(Type.String({ pattern: identifier }), Type.String({ pattern: '^https://' }), {
      description: "Field name → the provider's own page that value was taken from.",
    }),
  ),
  refreshLeadSeconds: Type.Optional(
    Type.Integer({
      minimum: 0,
      maximum: 86_400,
      description:
        'Renew this long before the access token expires (default: refresh.leadSeconds).',
    }),
  ),
  reauthLeadSeconds: Type.Optional(
    Type.Integer({
      minimum: 0,
      description:
        "For kinds without client credentials: turn a connection to needs_reauth this long before its refresh token ends (default: the kind's; else 0).",
    }),
  ),
  timeoutMs: Type.Optional(
    Type.Integer({
      minimum: 100,
      maximum: 30_000,
      description: 'Timeout of each call to the provider (default 5000).',
    }),
  ),
} satisfies Record<string, TSchema>;
