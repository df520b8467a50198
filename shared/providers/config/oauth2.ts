import * as Type from '@sinclair/typebox';
import type { Static } from '@sinclair/typebox';
import type { KindConfig } from '../types.ts';
import { commonProviderFields, secureUrlPattern, urlTemplate } from './common.ts';

/**
 * The oauth2 entry's schema (the protocol is ../oauth2.ts): any standard OAuth 2.0 provider,
 * authorization code with PKCE or client credentials, its URLs typed in or discovered.
 */

/** Extra parameters, minus the ones the protocol sets itself (a clash is a config error). */
const extraParams = (reserved: string[], description: string) =>
  Type.Optional(
    Type.Record(
      Type.String({ pattern: `^(?!(?:${reserved.join('|')})$)[A-Za-z0-9_.:-]{1,64}$` }),
      Type.String({ maxLength: 2048 }),
      { additionalProperties: false, description },
    ),
  );

const dottedPath = (description: string) =>
  Type.String({ pattern: '^[A-Za-z0-9_-]+(\\.[A-Za-z0-9_-]+)*$', maxLength: 256, description });

/** The oauth2 fields, each a fact about the provider (or a quirk of it) with why it exists. */
export const oauth2Fields = {
  grant: Type.Optional(
    Type.Union([Type.Literal('authorization_code'), Type.Literal('client_credentials')], {
      description:
        'authorization_code (default): a person consents in the browser (RFC 6749 §4.1, PKCE). client_credentials: the broker mints tokens itself, for the single connection "default" (§4.4).',
    }),
  ),
  authorizationUrl: Type.Optional(
    urlTemplate('Authorization endpoint the browser is sent to (RFC 6749 §3.1).'),
  ),
  tokenUrl: Type.Optional(urlTemplate('Token endpoint (RFC 6749 §3.2).')),
  refreshUrl: Type.Optional(
    urlTemplate('A separate endpoint for refresh requests, for servers that have one.'),
  ),
  issuer: Type.Optional(
    Type.String({
      format: 'uri',
      pattern: secureUrlPattern,
      description:
        "The server's issuer identifier. Without authorizationUrl/tokenUrl, they are discovered from its metadata (RFC 8414 / OIDC Discovery), once per container. With them, the callback's `iss` must equal it (RFC 9207). Required with scope openid.",
    }),
  ),
  discovery: Type.Optional(
    Type.Union([Type.Literal('oidc'), Type.Literal('oauth2')], {
      description:
        'Where the issuer publishes its metadata: /.well-known/openid-configuration (oidc, default) or /.well-known/oauth-authorization-server (oauth2, RFC 8414).',
    }),
  ),
  scopes: Type.Optional(
    Type.Array(Type.String({ pattern: '^[\\x21\\x23-\\x5B\\x5D-\\x7E]+$' }), {
      description: 'Scopes to request (RFC 6749 §3.3); none by default.',
    }),
  ),
  scopeSeparator: Type.Optional(
    Type.String({
      minLength: 1,
      maxLength: 4,
      description: 'Between scopes in the request: " " (default, the RFC); some servers want ",".',
    }),
  ),
  scopeParam: Type.Optional(
    Type.String({
      pattern: '^[a-z][a-z0-9_]{0,31}$',
      description:
        'The authorization request parameter that carries the scopes, for servers that read them from another name than scope (Slack user tokens: user_scope).',
    }),
  ),
  clientAuthentication: Type.Optional(
    Type.Union([Type.Literal('client_secret_basic'), Type.Literal('client_secret_post')], {
      description:
        'How the client authenticates at the token endpoint (RFC 6749 §2.3.1): HTTP Basic (default) or client_id/client_secret in the body, for servers that take only that.',
    }),
  ),
  tokenRequestEncoding: Type.Optional(
    Type.Union([Type.Literal('form'), Type.Literal('json')], {
      description:
        'Token request body: form (default, the RFC) or a JSON object, for servers that accept only JSON.',
    }),
  ),
  pkce: Type.Optional(
    Type.Boolean({
      description:
        'Send a PKCE S256 challenge (RFC 7636; default true). Turn it off only for a server that refuses one.',
    }),
  ),
  authorizationParams: extraParams(
    [
      'response_type',
      'client_id',
      'redirect_uri',
      'state',
      'scope',
      'code_challenge',
      'code_challenge_method',
    ],
    'Extra parameters of the authorization request (e.g. prompt, audience, access_type), for servers that need them to issue a refresh token or pick an API.',
  ),
  tokenParams: extraParams(
    [
      'grant_type',
      'code',
      'redirect_uri',
      'code_verifier',
      'refresh_token',
      'client_id',
      'client_secret',
    ],
    'Extra parameters of every token request (e.g. resource, audience), for servers that need them.',
  ),
  refreshSendsScope: Type.Optional(
    Type.Boolean({
      description:
        'Send the scopes again on refresh (RFC 6749 §6 makes it optional), for servers that narrow the token to nothing without them.',
    }),
  ),
  tokenResponsePath: Type.Optional(
    dottedPath(
      'Where the token fields sit in the answer (e.g. data, authed_user), for servers that wrap them in an envelope.',
    ),
  ),
  successWhen: Type.Optional(
    Type.Object(
      {
        path: dottedPath('The answer field that says whether the call worked.'),
        equals: Type.Optional(
          Type.Union([Type.Boolean(), Type.String(), Type.Number()], {
            description: 'It worked when the field equals this.',
          }),
        ),
        min: Type.Optional(Type.Number({ description: 'It worked when the field is ≥ this.' })),
        max: Type.Optional(Type.Number({ description: 'It worked when the field is ≤ this.' })),
      },
      {
        additionalProperties: false,
        description:
          'For servers that answer errors with HTTP 200 (`"ok": false`, a non-2xx `code`): such an answer is a refusal, not a token.',
      },
    ),
  ),
  errorMessagePath: Type.Optional(
    dottedPath(
      "Where such a refusal's error code is (e.g. error, error.code); only an identifier-like value is kept.",
    ),
  ),
  defaultExpiresInSeconds: Type.Optional(
    Type.Integer({
      minimum: 60,
      description:
        'Lifetime assumed when the answer has no expires_in, so the token is still renewed in time (the connection is flagged `expiryAssumed`).',
    }),
  ),
  refreshTokenExpiresInSeconds: Type.Optional(
    Type.Integer({
      minimum: 60,
      description:
        'How long a refresh token lives when the answer does not say (no refresh_token_expires_in): after that, renewal mints or asks for consent again.',
    }),
  ),
  refreshRefusedStatuses: Type.Optional(
    Type.Array(Type.Integer({ minimum: 400, maximum: 499 }), {
      description:
        'HTTP statuses of a refused refresh that mean the refresh token is gone (besides an invalid_grant answer), for servers that answer a dead refresh token with e.g. 401.',
    }),
  ),
  accessTokenHeader: Type.Optional(
    Type.String({
      pattern: '^[A-Za-z][A-Za-z0-9-]{0,63}$',
      description:
        "The header that carries the access token, bare, on API calls instead of Authorization (Shopify: X-Shopify-Access-Token); the token answer's headers then hold it there.",
    }),
  ),
  tokenType: Type.Optional(
    Type.String({
      pattern: '^[A-Za-z][A-Za-z0-9_-]{0,31}$',
      description:
        'Token type to use in the Authorization header whatever the answer says, for servers whose token_type is wrong or missing.',
    }),
  ),
  metadata: Type.Optional(
    Type.Record(
      Type.String({ pattern: '^[A-Za-z][A-Za-z0-9_]{0,63}$' }),
      Type.String({ pattern: '^(token|callback)\\.[A-Za-z0-9_.-]+$' }),
      {
        description:
          'Connection metadata to keep (never a secret): name → token.<path> in the token answer or callback.<param> of the callback (e.g. Salesforce instance_url, QuickBooks realmId).',
      },
    ),
  ),
};

const configSchema = Type.Object(
  { kind: Type.Literal('oauth2'), ...oauth2Fields, ...commonProviderFields },
  { additionalProperties: false },
);
export type OAuth2Config = Static<typeof configSchema>;

/** Rules across fields, which the schema cannot say. */
function checkEntry(config: OAuth2Config): string | undefined {
  const discovered = config.issuer !== undefined;
  if (!config.tokenUrl && !discovered) return 'tokenUrl: required (or an issuer to discover it)';
  if ((config.grant ?? 'authorization_code') === 'authorization_code') {
    if (!config.authorizationUrl && !discovered) {
      return 'authorizationUrl: required (or an issuer to discover it)';
    }
  }
  const rule = config.successWhen;
  if (rule && rule.equals === undefined && rule.min === undefined && rule.max === undefined) {
    return 'successWhen: needs equals, min or max';
  }
  // Metadata is handed to callers and kept in clear: never a token or a code.
  for (const [name, source] of Object.entries(config.metadata ?? {})) {
    if (/(^|\.)(access_token|refresh_token|id_token|code|code_verifier)$/.test(source)) {
      return `metadata.${name}: ${source} is a secret, not metadata`;
    }
  }
  return undefined;
}

/** How parseConfig checks an oauth2 entry. */
export const oauth2Config: KindConfig<OAuth2Config> = { configSchema, checkEntry };
