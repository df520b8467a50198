import * as Type from '@sinclair/typebox';
import type { Static } from '@sinclair/typebox';
import type { KindConfig } from '../types.ts';
import { commonProviderFields, urlTemplate } from './common.ts';

/**
 * Entries of the `api_key` and `basic` kinds: credentials a person (or the platform team)
 * supplies instead of an OAuth grant, sent in the headers the entry declares, optionally checked
 * with a verification request before they are stored.
 */
const credentialField = Type.Object(
  {
    label: Type.String({ minLength: 1, maxLength: 64, description: 'The form label.' }),
    secret: Type.Boolean({
      description: 'Whether the value is a secret: a password field, never shown or logged.',
    }),
    pattern: Type.Optional(
      Type.String({ maxLength: 256, description: 'Regular expression the value must match.' }),
    ),
  },
  { additionalProperties: false },
);

export const credentialFields = {
  credentialFields: Type.Record(
    Type.String({ pattern: '^[A-Za-z][A-Za-z0-9_]{0,63}$' }),
    credentialField,
    {
      minProperties: 1,
      description:
        'The values a person enters on the hosted form (basic: username and password), by name.',
    },
  ),
  verify: Type.Optional(
    Type.Object(
      {
        method: Type.Union([Type.Literal('GET'), Type.Literal('POST')]),
        url: urlTemplate(
          'The request that proves the credentials work; may use {apiBaseUrl}, {baseUrl}, connection params and {credentials.<field>} of fields that are not secret (secrets go in headers).',
        ),
        expectStatus: Type.Array(Type.Integer({ minimum: 200, maximum: 399 }), {
          minItems: 1,
          description: 'Statuses that mean the credentials were accepted.',
        }),
      },
      {
        additionalProperties: false,
        description:
          'A request made with the credentials before they are stored, so a wrong key is refused at connect time.',
      },
    ),
  ),
};

export const apiKeySchema = Type.Object(
  { kind: Type.Literal('api_key'), ...credentialFields, ...commonProviderFields },
  { additionalProperties: false },
);
export const basicSchema = Type.Object(
  { kind: Type.Literal('basic'), ...credentialFields, ...commonProviderFields },
  { additionalProperties: false },
);
export type ApiKeyConfig = Static<typeof apiKeySchema>;
export type BasicConfig = Static<typeof basicSchema>;

type CredentialsConfig = ApiKeyConfig | BasicConfig;

/** A secret never goes into a URL we build (URLs reach logs and error chains): headers only. */
function secretInVerifyUrl(config: CredentialsConfig): string | undefined {
  const secret = Object.entries(config.credentialFields).find(
    ([name, field]) => field.secret && config.verify?.url.includes(`{credentials.${name}}`),
  );
  return secret
    ? `verify.url: ${secret[0]} is a secret field; send it in a header, never in the URL`
    : undefined;
}

/** How parseConfig checks an api_key entry. */
export const apiKeyConfig: KindConfig<ApiKeyConfig> = {
  configSchema: apiKeySchema,
  checkEntry: (config) =>
    secretInVerifyUrl(config) ??
    (Object.values(config.headers ?? {}).some((value) => value.includes('{credentials.'))
      ? undefined
      : 'headers: an api_key entry sends the key in a header, e.g. {"X-API-Key": "{credentials.apiKey}"}'),
};

/** How parseConfig checks a basic entry. */
export const basicConfig: KindConfig<BasicConfig> = {
  configSchema: basicSchema,
  checkEntry: (config) =>
    secretInVerifyUrl(config) ??
    (config.credentialFields.username && config.credentialFields.password
      ? undefined
      : 'credentialFields: a basic entry has username and password'),
};
