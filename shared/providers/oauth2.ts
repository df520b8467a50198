import { Type, type Static } from '@sinclair/typebox';
import * as oauth from 'oauth4webapi';
import {
  AccessDeniedError,
  asGrantRefused,
  BrokerError,
  ConfigError,
  InvalidRequestError,
  ProviderRejectedError,
  ProviderUnavailableError,
} from '../errors.ts';
import { commonProviderFields } from './common.ts';
import { isRecord, readOAuthTokenFields, type ProviderResponse } from './http.ts';
import type {
  ProviderContext,
  ProviderKind,
  ProviderSecret,
  TokenSet,
  UserConsentProtocol,
} from './types.ts';

/**
 * Any standard OAuth 2.0 provider, from configuration alone: authorization code with PKCE (S256)
 * and refresh (RFC 6749 §4.1 and §6, RFC 7636). The protocol is oauth4webapi's; this module only
 * builds its inputs from the config entry and maps its outcomes to the broker's errors.
 */

// Plain http only on loopback, for a server the tests (or a developer) run locally; tokens and
// client secrets never cross a network unencrypted.
const secureUrl = '^(https://|http://(localhost|127\\.0\\.0\\.1|\\[::1\\])([:/?#]|$))';
const endpoint = (description: string) =>
  Type.String({ format: 'uri', pattern: secureUrl, description });

/** Extra parameters, minus the ones the protocol sets itself (a clash is a config error). */
const extraParams = (reserved: string[], description: string) =>
  Type.Optional(
    Type.Record(
      Type.String({ pattern: `^(?!(?:${reserved.join('|')})$)[A-Za-z0-9_.:-]{1,64}$` }),
      Type.String({ maxLength: 2048 }),
      { additionalProperties: false, description },
    ),
  );

const configSchema = Type.Object(
  {
    kind: Type.Literal('oauth2'),
    authorizationUrl: endpoint('Authorization endpoint the browser is sent to (RFC 6749 §3.1).'),
    tokenUrl: endpoint('Token endpoint (RFC 6749 §3.2).'),
    issuer: Type.Optional(
      Type.String({
        format: 'uri',
        pattern: secureUrl,
        description:
          "The server's issuer identifier (RFC 8414). Set it when the server sends `iss` in its redirects (metadata authorization_response_iss_parameter_supported): the callback must then carry exactly this `iss` (RFC 9207). Required with scope openid.",
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
        description: 'Between scopes in the request: " " (default, the RFC) or e.g. ",".',
      }),
    ),
    clientAuthentication: Type.Optional(
      Type.Union([Type.Literal('client_secret_basic'), Type.Literal('client_secret_post')], {
        description:
          'How the client authenticates at the token endpoint (RFC 6749 §2.3.1): HTTP Basic (default) or client_id/client_secret in the form body.',
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
      'Extra parameters of the authorization request (e.g. prompt, audience, access_type).',
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
      'Extra parameters of every token request (e.g. resource, audience).',
    ),
    pkce: Type.Optional(
      Type.Boolean({
        description:
          'Send a PKCE S256 challenge (RFC 7636; default true). Turn it off only for a server that refuses one.',
      }),
    ),
    ...commonProviderFields,
  },
  { additionalProperties: false },
);
export type OAuth2Config = Static<typeof configSchema>;

/**
 * The authorization server as oauth4webapi sees it, from the config entry (no discovery: the
 * entry is the metadata). oauth4webapi needs an issuer; without a configured one the token
 * endpoint's origin stands in, and nothing is ever compared with it (see `callbackParams`).
 */
function authorizationServer(config: OAuth2Config): oauth.AuthorizationServer {
  return {
    issuer: config.issuer ?? new URL(config.tokenUrl).origin,
    authorization_endpoint: config.authorizationUrl,
    token_endpoint: config.tokenUrl,
    // RFC 9207 §2.4: from a server known to send `iss`, a response without it is refused.
    authorization_response_iss_parameter_supported: config.issuer !== undefined,
  };
}

function clientAuthentication(config: OAuth2Config, secret: ProviderSecret): oauth.ClientAuth {
  return config.clientAuthentication === 'client_secret_post'
    ? oauth.ClientSecretPost(secret.client_secret!)
    : oauth.ClientSecretBasic(secret.client_secret!);
}

/**
 * oauth4webapi's transport, routed through the context's provider HTTP: its timeout, and its
 * classification of every answer (4xx → ProviderRejectedError with the OAuth `error` code, 5xx /
 * 429 / timeout / network → ProviderUnavailableError). Only 2xx answers reach oauth4webapi, which
 * then validates them. Neither grant is retried: a code is single use and a refresh token may
 * rotate (architecture.md, "Provider calls").
 */
function tokenRequestOptions(
  ctx: ProviderContext<OAuth2Config>,
  label: string,
): oauth.TokenEndpointRequestOptions {
  return {
    [oauth.customFetch]: (url, init) =>
      ctx.http(
        {
          label,
          method: 'POST',
          url,
          headers: init.headers,
          body: init.body.toString(),
          retrySafe: false,
        },
        toFetchResponse,
      ),
    // The schema allows plain http for loopback hosts only.
    [oauth.allowInsecureRequests]: new URL(ctx.config.tokenUrl).protocol === 'http:',
    ...(ctx.config.tokenParams ? { additionalParameters: ctx.config.tokenParams } : {}),
  };
}

function toFetchResponse(response: ProviderResponse): Response {
  const bodyless = response.status === 204 || response.status === 205;
  return new Response(bodyless ? null : withTokenType(response.text), {
    status: response.status,
    headers: response.headers,
  });
}

/**
 * Adds `"token_type":"Bearer"` to a JSON object answer without one. RFC 6749 §5.1 requires the
 * field and oauth4webapi refuses an answer without it, but some providers omit it; such an answer
 * would count as transient although the provider may already have rotated the refresh token,
 * which would then be lost (the next try meets invalid_grant). Bearer is what readOAuthTokenFields
 * assumes for a missing type too. Anything that is not a JSON object passes unchanged.
 */
function withTokenType(text: string): string {
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    return text;
  }
  if (!isRecord(body) || body.token_type != null) return text;
  return JSON.stringify({ ...body, token_type: 'Bearer' });
}

/**
 * Sends a token request and validates its answer. Failures of oauth4webapi itself carry the
 * request or answer (codes, tokens) in their `cause`, so only their static message is kept.
 */
async function tokenCall(
  ctx: ProviderContext<OAuth2Config>,
  label: string,
  send: (options: oauth.TokenEndpointRequestOptions) => Promise<Response>,
  process: (response: Response) => Promise<oauth.TokenEndpointResponse>,
): Promise<TokenSet> {
  let response: Response;
  try {
    response = await send(tokenRequestOptions(ctx, label));
  } catch (error) {
    if (error instanceof BrokerError) throw error;
    throw new Error(`The ${label} request could not be made: ${libraryMessage(error)}`);
  }
  let body: oauth.TokenEndpointResponse;
  try {
    body = await process(response);
  } catch (error) {
    // A 2xx that is not a conforming token response: unreadable, like any garbage answer.
    throw new ProviderUnavailableError(
      `The ${label} answer was not a valid token response: ${libraryMessage(error)}`,
      { status: response.status },
    );
  }
  return readOAuthTokenFields(body, label, ctx.now());
}

function libraryMessage(error: unknown): string {
  return error instanceof Error ? error.message : 'unknown failure';
}

/** An OAuth error code fit for a message: identifier-like, never free text. */
function safeCode(code: string): string | undefined {
  return /^[A-Za-z0-9_.-]{1,64}$/.test(code) ? code : undefined;
}

/**
 * Validates the redirect back from the authorization server (RFC 6749 §4.1.2, RFC 9207) and
 * returns its parameters for the code exchange.
 */
function callbackParams(
  ctx: ProviderContext<OAuth2Config>,
  server: oauth.AuthorizationServer,
  client: oauth.Client,
  params: Record<string, string>,
  state: string,
): URLSearchParams {
  const search = new URLSearchParams(params);
  // With no issuer configured there is nothing to check an `iss` against; the mix-up defence is
  // then the callback URL, distinct per provider (RFC 9700 §4.4).
  if (!ctx.config.issuer) search.delete('iss');
  let validated: URLSearchParams;
  try {
    validated = oauth.validateAuthResponse(server, client, search, state);
  } catch (error) {
    if (error instanceof oauth.AuthorizationResponseError) throw authorizationError(ctx, error);
    throw new InvalidRequestError(
      `The ${ctx.providerId} callback is not a valid authorization response: ${libraryMessage(error)}`,
    );
  }
  if (!validated.get('code')) {
    throw new InvalidRequestError(`The ${ctx.providerId} callback carried no code.`);
  }
  return validated;
}

/** RFC 6749 §4.1.2.1: the server's error redirect. */
function authorizationError(
  ctx: ProviderContext<OAuth2Config>,
  error: oauth.AuthorizationResponseError,
): Error {
  if (error.error === 'access_denied') return new AccessDeniedError();
  const code = safeCode(error.error);
  const message = `The ${ctx.providerId} authorization was refused${code ? ` (${code})` : ''}.`;
  // These two say "try again later" in the RFC's own words.
  if (code === 'server_error' || code === 'temporarily_unavailable') {
    return new ProviderUnavailableError(message);
  }
  return new ProviderRejectedError(message, { ...(code ? { providerCode: code } : {}) });
}

const authorizationCode: UserConsentProtocol<OAuth2Config> = {
  kind: 'oauth2',
  variant: 'user-consent',
  secretFields: ['client_id', 'client_secret'],

  /** The authorization request (RFC 6749 §4.1.1) with a PKCE S256 challenge (RFC 7636 §4.3). */
  startConsent: async (ctx, input) => {
    const scopes = ctx.config.scopes ?? [];
    if (scopes.includes('openid') && !ctx.config.issuer) {
      // The ID token that comes back is checked against the issuer (OIDC Core §3.1.3.7).
      throw new ConfigError(`providers.${ctx.providerId}.issuer: required with scope openid`);
    }
    const secret = await ctx.secret();
    const url = new URL(ctx.config.authorizationUrl);
    for (const [name, value] of Object.entries(ctx.config.authorizationParams ?? {})) {
      url.searchParams.set(name, value);
    }
    url.searchParams.set('response_type', 'code');
    url.searchParams.set('client_id', secret.client_id!);
    url.searchParams.set('redirect_uri', input.callbackUrl);
    url.searchParams.set('state', input.state);
    if (scopes.length > 0)
      url.searchParams.set('scope', scopes.join(ctx.config.scopeSeparator ?? ' '));
    if (ctx.config.pkce === false) return { authorizationUrl: url.toString() };
    const codeVerifier = oauth.generateRandomCodeVerifier();
    url.searchParams.set('code_challenge', await oauth.calculatePKCECodeChallenge(codeVerifier));
    url.searchParams.set('code_challenge_method', 'S256');
    return { authorizationUrl: url.toString(), flowSecrets: { code_verifier: codeVerifier } };
  },

  /** The callback, then the code exchange (RFC 6749 §4.1.3) with the PKCE verifier. */
  completeConsent: async (ctx, input) => {
    const server = authorizationServer(ctx.config);
    const secret = await ctx.secret();
    const client: oauth.Client = { client_id: secret.client_id! };
    const params = callbackParams(ctx, server, client, input.params, input.state);
    return tokenCall(
      ctx,
      `${ctx.providerId} code exchange`,
      (options) =>
        oauth.authorizationCodeGrantRequest(
          server,
          client,
          clientAuthentication(ctx.config, secret),
          params,
          input.callbackUrl,
          // A flow started with PKCE off carries no verifier.
          input.flowSecrets.code_verifier ?? oauth.nopkce,
          options,
        ),
      (response) => oauth.processAuthorizationCodeResponse(server, client, response),
    );
  },

  /**
   * RFC 6749 §6. A rotated refresh token comes back in the answer and is stored; when none does,
   * the core keeps the current one (refresh.ts, renewTokens). Only `invalid_grant` refuses the
   * connection's grant (§5.2: the refresh token is invalid, expired or revoked); `invalid_client`
   * and the rest are about us, and reconnecting would not fix them.
   */
  refresh: async (ctx, current) => {
    if (!current.refreshToken) {
      throw new ProviderRejectedError(`The ${ctx.providerId} connection holds no refresh token.`, {
        grantRefused: true,
      });
    }
    const server = authorizationServer(ctx.config);
    const secret = await ctx.secret();
    const client: oauth.Client = { client_id: secret.client_id! };
    try {
      return await tokenCall(
        ctx,
        `${ctx.providerId} refresh`,
        (options) =>
          oauth.refreshTokenGrantRequest(
            server,
            client,
            clientAuthentication(ctx.config, secret),
            current.refreshToken!,
            options,
          ),
        (response) => oauth.processRefreshTokenResponse(server, client, response),
      );
    } catch (error) {
      if (error instanceof ProviderRejectedError && error.providerCode === 'invalid_grant') {
        throw asGrantRefused(error);
      }
      throw error;
    }
  },
};

export const oauth2: ProviderKind<OAuth2Config> = {
  kind: 'oauth2',
  configSchema,
  // Every URL is in the entry itself: no documented hosts, no environments.
  hosts: {},
  protocol: () => authorizationCode,
};
