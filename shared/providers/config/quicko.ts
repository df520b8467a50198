import * as Type from '@sinclair/typebox';
import type { Static } from '@sinclair/typebox';
import type { KindConfig } from '../types.ts';
import { commonProviderFields, urlTemplate } from './common.ts';

/**
 * The quicko entry's schema (the protocol is ../quicko.ts): its hosts, paths, parameter names
 * and lifetimes are catalog data.
 */
const configSchema = Type.Object(
  {
    kind: Type.Literal('quicko'),
    consentUrl: urlTemplate(
      "Quicko's consent (OAuth login) page; the docs leave its host unstated (an older doc: https://oauth.quicko.com/login).",
    ),
    authenticateUrl: urlTemplate(
      'The API-user token endpoint (POST, x-api-key and x-api-secret headers), e.g. {baseUrl}/authenticate.',
    ),
    authorizeUrl: urlTemplate(
      'The exchange and refresh endpoint (POST, the token as a query parameter), e.g. {baseUrl}/oauth/authorize.',
    ),
    requestTokenParam: Type.String({
      pattern: '^[A-Za-z0-9_.-]{1,64}$',
      description:
        'Name of the request token in the callback and of the token parameter of authorizeUrl ("request_token").',
    }),
    redirectParam: Type.String({
      pattern: '^[A-Za-z0-9_.-]{1,64}$',
      description:
        'Name of the consent-page parameter carrying our callback URL: "redirect" (current docs) or "redirect_url" (older doc).',
    }),
    redirectEncoding: Type.Union([Type.Literal('base64'), Type.Literal('plain')], {
      description: 'How the callback URL is encoded in that parameter; the docs say base64.',
    }),
    deniedWhen: Type.Object(
      {
        param: Type.String({ pattern: '^[A-Za-z0-9_.-]{1,64}$' }),
        equals: Type.String({ maxLength: 64 }),
      },
      {
        additionalProperties: false,
        description: 'The callback parameter and value that say the person cancelled.',
      },
    ),
    options: Type.Optional(
      Type.Record(Type.String(), Type.Unknown(), {
        description: 'Options sent to the consent page as base64-encoded JSON (`options`).',
      }),
    ),
    apiVersion: Type.String({
      pattern: '^[0-9A-Za-z.]{1,16}$',
      description: 'The x-api-version header ("1.0").',
    }),
    accessTokenLifetimeSeconds: Type.Integer({
      minimum: 60,
      description: 'Lifetime of an access token when the answer does not say (24 h).',
    }),
    refreshTokenLifetimeSeconds: Type.Integer({
      minimum: 60,
      description: 'Lifetime of a refresh token, which cannot be renewed (1 year).',
    }),
    apiUserTokenLifetimeSeconds: Type.Integer({
      minimum: 60,
      description: 'Lifetime of the API-user token from authenticateUrl (24 h).',
    }),
    ...commonProviderFields,
  },
  { additionalProperties: false },
);
export type QuickoConfig = Static<typeof configSchema>;

/** How parseConfig checks a quicko entry. */
export const quickoConfig: KindConfig<QuickoConfig> = { configSchema };
