import { Type, type Static } from '@sinclair/typebox';
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
          'The request that proves the credentials work; may use {apiBaseUrl}, {baseUrl}, {credentials.<field>} and connection params.',
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
