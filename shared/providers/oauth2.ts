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
import { fillTemplate, valueAtPath } from './common.ts';
import type { OAuth2Config } from './config/oauth2.ts';
import { isRecord, readOAuthTokenFields, type ProviderResponse } from './http.ts';
import type {
  ClientCredentialsProtocol,
  KindProtocol,
  ProviderContext,
  ProviderSecret,
  TokenSet,
  UserConsentProtocol,
} from './types.ts';

/**
 * Any standard OAuth 2.0 provider, from configuration alone: authorization code with PKCE (S256)
 * and refresh (RFC 6749 §4.1 and §6, RFC 7636), or client credentials (§4.4), with the server's
 * URLs typed in or discovered from its issuer (RFC 8414 / OpenID Connect Discovery). The protocol
 * is oauth4webapi's; this module builds its inputs from the entry, applies the entry's quirk
 * fields around its transport, and maps its outcomes to the broker's errors. The entry's schema
 * is config/oauth2.ts.
 */

/** The values an entry's {templates} may name: its base URL and its connection params. */
export function templateValues(
  ctx: ProviderContext<{ params?: Record<string, string> }>,
  connectionParams: Record<string, string> | undefined,
): Record<string, string> {
  return { baseUrl: ctx.baseUrl, ...ctx.config.params, ...connectionParams };
}

/**
 * The server's metadata: from the entry's URLs, or discovered from its issuer once per container
 * (a failed discovery is tried again on the next call). oauth4webapi needs an issuer; without a
 * configured one the token endpoint's origin stands in, and nothing is ever compared with it
 * (see `callbackParams`).
 */
function serverMetadata(config: OAuth2Config) {
  let discovered: Promise<oauth.AuthorizationServer> | undefined;
  const discover = (ctx: ProviderContext<OAuth2Config>) => {
    discovered ??= discoverServer(ctx).catch((error: unknown) => {
      discovered = undefined;
      throw error;
    });
    return discovered;
  };
  return async (
    ctx: ProviderContext<OAuth2Config>,
    connectionParams: Record<string, string> | undefined,
  ): Promise<oauth.AuthorizationServer> => {
    const values = templateValues(ctx, connectionParams);
    const fill = (template: string | undefined, field: string) =>
      template === undefined
        ? undefined
        : fillTemplate(template, values, `providers.${ctx.providerId}.${field}`);
    const typed = {
      authorization_endpoint: fill(config.authorizationUrl, 'authorizationUrl'),
      token_endpoint: fill(config.tokenUrl, 'tokenUrl'),
    };
    const base =
      typed.token_endpoint === undefined ||
      (typed.authorization_endpoint === undefined && isCode(config))
        ? await discover(ctx)
        : undefined;
    const tokenEndpoint = typed.token_endpoint ?? base?.token_endpoint;
    if (!tokenEndpoint) {
      throw new ConfigError(
        `providers.${ctx.providerId}: the issuer's metadata has no token_endpoint`,
      );
    }
    return {
      ...base,
      issuer: config.issuer ?? new URL(tokenEndpoint).origin,
      ...((typed.authorization_endpoint ?? base?.authorization_endpoint)
        ? { authorization_endpoint: typed.authorization_endpoint ?? base?.authorization_endpoint }
        : {}),
      token_endpoint: tokenEndpoint,
      // RFC 9207 §2.4: from a server known to send `iss`, a response without it is refused.
      authorization_response_iss_parameter_supported:
        base?.authorization_response_iss_parameter_supported ?? config.issuer !== undefined,
    };
  };
}

const isCode = (config: OAuth2Config) =>
  (config.grant ?? 'authorization_code') === 'authorization_code';

/** RFC 8414 §3 / OIDC Discovery §4: GET the well-known metadata and check its issuer. */
async function discoverServer(
  ctx: ProviderContext<OAuth2Config>,
): Promise<oauth.AuthorizationServer> {
  const issuer = new URL(ctx.config.issuer!);
  const label = `${ctx.providerId} discovery`;
  let response: Response;
  try {
    response = await oauth.discoveryRequest(issuer, {
      algorithm: ctx.config.discovery ?? 'oidc',
      [oauth.customFetch]: (url, init) =>
        ctx.http(
          { label, method: 'GET', url, headers: headerRecord(init.headers), retrySafe: true },
          (answer) => new Response(answer.text, { status: answer.status, headers: answer.headers }),
        ),
      [oauth.allowInsecureRequests]: issuer.protocol === 'http:',
    });
  } catch (error) {
    if (error instanceof BrokerError) throw error;
    throw new Error(`The ${label} request could not be made: ${libraryMessage(error)}`);
  }
  try {
    return await oauth.processDiscoveryResponse(issuer, response);
  } catch (error) {
    throw new ProviderUnavailableError(
      `The ${label} answer was not valid server metadata: ${libraryMessage(error)}`,
    );
  }
}

function clientAuthentication(config: OAuth2Config, secret: ProviderSecret): oauth.ClientAuth {
  return config.clientAuthentication === 'client_secret_post'
    ? oauth.ClientSecretPost(secret.client_secret!)
    : oauth.ClientSecretBasic(secret.client_secret!);
}

function headerRecord(headers: ConstructorParameters<typeof Headers>[0]): Record<string, string> {
  return Object.fromEntries(new Headers(headers));
}

/** What one token call's answer held besides the token fields (for metadata). */
interface TokenCallAnswer {
  root?: Record<string, unknown>;
}

/**
 * oauth4webapi's transport, routed through the context's provider HTTP: its timeout, and its
 * classification of every answer (4xx → ProviderRejectedError with the OAuth `error` code, 5xx /
 * 429 / timeout / network → ProviderUnavailableError). The entry's quirks are applied here, on the
 * way out (JSON body) and on the way in (envelope, 200 errors, default lifetime), so oauth4webapi
 * sees a conforming exchange and validates it as usual.
 */
function tokenRequestOptions(
  ctx: ProviderContext<OAuth2Config>,
  label: string,
  retrySafe: boolean,
  answer: TokenCallAnswer,
  additionalParameters: Record<string, string>,
  tokenEndpoint: string,
): oauth.TokenEndpointRequestOptions {
  const { config } = ctx;
  return {
    [oauth.customFetch]: (url, init) => {
      const headers = headerRecord(init.headers);
      let body = init.body.toString();
      if (config.tokenRequestEncoding === 'json') {
        headers['content-type'] = 'application/json';
        body = JSON.stringify(Object.fromEntries(init.body));
      }
      return ctx.http({ label, method: 'POST', url, headers, body, retrySafe }, (response) =>
        toFetchResponse(readQuirks(config, response, label, answer)),
      );
    },
    // The schema allows plain http for loopback hosts only (and the offline sandbox).
    [oauth.allowInsecureRequests]: new URL(tokenEndpoint).protocol === 'http:',
    ...(Object.keys(additionalParameters).length > 0 ? { additionalParameters } : {}),
  };
}

/**
 * Reads a 2xx answer inside the provider-HTTP retry loop (so garbage is retried where the call is
 * safe to repeat) and applies the answer quirks: `successWhen` (a 200 that is an error becomes a
 * refusal), `tokenResponsePath` (the token fields under an envelope), `tokenType` and a missing
 * token_type, `defaultExpiresInSeconds`. oauth4webapi then validates what is left.
 */
function readQuirks(
  config: OAuth2Config,
  response: ProviderResponse,
  label: string,
  answer: TokenCallAnswer,
): ProviderResponse {
  let root: unknown;
  try {
    root = JSON.parse(response.text);
  } catch {
    // fall through
  }
  if (!isRecord(root)) {
    throw new ProviderUnavailableError(`The ${label} answer was not a JSON object.`, {
      status: response.status,
    });
  }
  answer.root = root;
  if (config.successWhen) {
    const value = valueAtPath(root, config.successWhen.path);
    if (value === undefined) {
      throw new ProviderUnavailableError(
        `The ${label} answer carried no ${config.successWhen.path}.`,
        { status: response.status },
      );
    }
    if (!succeeded(config.successWhen, value)) {
      const code = config.errorMessagePath
        ? safeCode(valueAtPath(root, config.errorMessagePath))
        : undefined;
      throw new ProviderRejectedError(`The ${label} call was refused${code ? ` (${code})` : ''}.`, {
        status: response.status,
        ...(code ? { providerCode: code } : {}),
      });
    }
  }
  let fields: unknown = root;
  if (config.tokenResponsePath) {
    fields = valueAtPath(root, config.tokenResponsePath);
    if (!isRecord(fields)) {
      throw new ProviderUnavailableError(
        `The ${label} answer carried no ${config.tokenResponsePath} object.`,
        { status: response.status },
      );
    }
  }
  const body = { ...(fields as Record<string, unknown>) };
  if (typeof body.access_token !== 'string' || body.access_token.length === 0) {
    throw new ProviderUnavailableError(`The ${label} answer carried no access token.`, {
      status: response.status,
    });
  }
  // oauth4webapi knows Bearer and DPoP only; a configured type replaces whatever came.
  // RFC 6749 §5.1 requires token_type, but some providers omit it; such an answer would count as
  // transient although the provider may already have rotated the refresh token, which would then
  // be lost. Bearer is what readOAuthTokenFields assumes for a missing type too.
  if (config.tokenType || body.token_type == null) body.token_type = 'Bearer';
  if (body.expires_in == null && config.defaultExpiresInSeconds !== undefined) {
    body.expires_in = config.defaultExpiresInSeconds;
    body.broker_expiry_assumed = true;
  }
  return { ...response, text: JSON.stringify(body) };
}

function succeeded(rule: NonNullable<OAuth2Config['successWhen']>, value: unknown): boolean {
  if (rule.equals !== undefined && value !== rule.equals) return false;
  if (rule.min !== undefined || rule.max !== undefined) {
    const number = Number(value);
    if (!Number.isFinite(number)) return false;
    if (rule.min !== undefined && number < rule.min) return false;
    if (rule.max !== undefined && number > rule.max) return false;
  }
  return true;
}

function toFetchResponse(response: ProviderResponse): Response {
  const bodyless = response.status === 204 || response.status === 205;
  return new Response(bodyless ? null : response.text, {
    status: response.status,
    headers: response.headers,
  });
}

/**
 * Sends a token request and validates its answer. Failures of oauth4webapi itself carry the
 * request or answer (codes, tokens) in their `cause`, so only their static message is kept.
 */
async function tokenCall(
  ctx: ProviderContext<OAuth2Config>,
  label: string,
  options: {
    retrySafe: boolean;
    tokenEndpoint: string;
    additionalParameters: Record<string, string>;
  },
  send: (options: oauth.TokenEndpointRequestOptions) => Promise<Response>,
  process: (response: Response) => Promise<oauth.TokenEndpointResponse>,
  extra: { callback?: Record<string, string>; connectionParams?: Record<string, string> } = {},
): Promise<TokenSet> {
  const answer: TokenCallAnswer = {};
  let response: Response;
  try {
    response = await send(
      tokenRequestOptions(
        ctx,
        label,
        options.retrySafe,
        answer,
        options.additionalParameters,
        options.tokenEndpoint,
      ),
    );
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
  const now = ctx.now();
  const fields = readOAuthTokenFields(body, label, now);
  const refreshLifetime =
    Number(body.refresh_token_expires_in) || ctx.config.refreshTokenExpiresInSeconds;
  const metadata = readMetadata(ctx.config, answer.root ?? {}, extra.callback);
  return {
    ...fields,
    ...(ctx.config.tokenType ? { tokenType: ctx.config.tokenType } : {}),
    ...(fields.refreshToken && refreshLifetime
      ? { refreshTokenExpiresAt: now + refreshLifetime * 1000 }
      : {}),
    ...(body.broker_expiry_assumed === true ? { expiryAssumed: true } : {}),
    ...(metadata ? { metadata } : {}),
    ...(extra.connectionParams && Object.keys(extra.connectionParams).length > 0
      ? { connectionParams: extra.connectionParams }
      : {}),
  };
}

/**
 * The entry's `metadata` fields, from the token answer's root (`token.<path>`) or the callback
 * (`callback.<param>`). Only strings and numbers are kept, at most 1 KB each: metadata names an
 * account or an instance, never holds a secret.
 */
function readMetadata(
  config: OAuth2Config,
  root: Record<string, unknown>,
  callback: Record<string, string> | undefined,
): Record<string, string> | undefined {
  if (!config.metadata) return undefined;
  const metadata: Record<string, string> = {};
  for (const [name, source] of Object.entries(config.metadata)) {
    const [from, ...path] = source.split('.');
    const value = from === 'token' ? valueAtPath(root, path.join('.')) : callback?.[path.join('.')];
    if ((typeof value === 'string' || typeof value === 'number') && String(value).length <= 1024) {
      metadata[name] = String(value);
    }
  }
  return Object.keys(metadata).length > 0 ? metadata : undefined;
}

function libraryMessage(error: unknown): string {
  return error instanceof Error ? error.message : 'unknown failure';
}

/** An OAuth error code fit for a message: identifier-like, never free text. */
function safeCode(code: unknown): string | undefined {
  return typeof code === 'string' && /^[A-Za-z0-9_.-]{1,64}$/.test(code) ? code : undefined;
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

const scopeOf = (config: OAuth2Config) =>
  config.scopes && config.scopes.length > 0
    ? config.scopes.join(config.scopeSeparator ?? ' ')
    : undefined;

/** The two grants' shared steps for one entry (one metadata cache per configured provider). */
function protocolSteps(config: OAuth2Config) {
  const server = serverMetadata(config);

  /**
   * RFC 6749 §6. A rotated refresh token comes back in the answer and is stored; when none does,
   * the core keeps the current one (refresh.ts, renewTokens). Only `invalid_grant` refuses the
   * connection's grant (§5.2: the refresh token is invalid, expired or revoked); `invalid_client`
   * and the rest are about us, and reconnecting would not fix them. Not retried: a refresh token
   * may rotate (architecture.md, "Provider calls").
   */
  const refresh = async (ctx: ProviderContext<OAuth2Config>, current: TokenSet) => {
    const refreshToken = current.refreshToken;
    if (!refreshToken) {
      throw new ProviderRejectedError(`The ${ctx.providerId} connection holds no refresh token.`, {
        grantRefused: true,
      });
    }
    const metadata = await server(ctx, current.connectionParams);
    const refreshServer = ctx.config.refreshUrl
      ? {
          ...metadata,
          token_endpoint: fillTemplate(
            ctx.config.refreshUrl,
            templateValues(ctx, current.connectionParams),
            `providers.${ctx.providerId}.refreshUrl`,
          ),
        }
      : metadata;
    const secret = await ctx.secret();
    const client: oauth.Client = { client_id: secret.client_id! };
    const scope = ctx.config.refreshSendsScope ? scopeOf(ctx.config) : undefined;
    try {
      const renewed = await tokenCall(
        ctx,
        `${ctx.providerId} refresh`,
        {
          retrySafe: false,
          tokenEndpoint: refreshServer.token_endpoint!,
          additionalParameters: { ...ctx.config.tokenParams, ...(scope ? { scope } : {}) },
        },
        (options) =>
          oauth.refreshTokenGrantRequest(
            refreshServer,
            client,
            clientAuthentication(ctx.config, secret),
            refreshToken,
            options,
          ),
        (response) => oauth.processRefreshTokenResponse(refreshServer, client, response),
        current.connectionParams ? { connectionParams: current.connectionParams } : {},
      );
      // What the connection was consented with stays with it.
      return {
        ...renewed,
        ...(current.metadata || renewed.metadata
          ? { metadata: { ...current.metadata, ...renewed.metadata } }
          : {}),
      };
    } catch (error) {
      const refused =
        error instanceof ProviderRejectedError &&
        (error.providerCode === 'invalid_grant' ||
          (error.status !== undefined &&
            (ctx.config.refreshRefusedStatuses ?? []).includes(error.status)));
      if (refused) throw asGrantRefused(error);
      throw error;
    }
  };
  return { server, refresh };
}

function clientCredentials(config: OAuth2Config): ClientCredentialsProtocol<OAuth2Config> {
  const { server, refresh } = protocolSteps(config);
  return {
    kind: 'oauth2',
    variant: 'client-credentials',
    ...tokenHeadersOf(config),
    secretFields: ['client_id', 'client_secret'],
    /** RFC 6749 §4.4.2; repeating a mint is harmless, so it is retried like any safe call. */
    mint: async (ctx) => {
      const metadata = await server(ctx, undefined);
      const secret = await ctx.secret();
      const client: oauth.Client = { client_id: secret.client_id! };
      const scope = scopeOf(ctx.config);
      return tokenCall(
        ctx,
        `${ctx.providerId} token`,
        // The grant's parameters carry the extra ones (this grant takes no additionalParameters).
        { retrySafe: true, tokenEndpoint: metadata.token_endpoint!, additionalParameters: {} },
        (options) =>
          oauth.clientCredentialsGrantRequest(
            metadata,
            client,
            clientAuthentication(ctx.config, secret),
            { ...ctx.config.tokenParams, ...(scope ? { scope } : {}) },
            options,
          ),
        (response) => oauth.processClientCredentialsResponse(metadata, client, response),
      );
    },
    // Used only when an answer carried a refresh token; when it is refused the core mints again.
    refresh,
  };
}

/** `accessTokenHeader`: the token goes bare in that header, and no Authorization is sent. */
function tokenHeadersOf(config: OAuth2Config): {
  tokenHeaders?: (tokens: TokenSet) => Record<string, string>;
} {
  const name = config.accessTokenHeader;
  return name ? { tokenHeaders: (tokens) => ({ [name]: tokens.accessToken }) } : {};
}

function authorizationCode(config: OAuth2Config): UserConsentProtocol<OAuth2Config> {
  const { server, refresh } = protocolSteps(config);
  return {
    kind: 'oauth2',
    variant: 'user-consent',
    secretFields: ['client_id', 'client_secret'],
    ...tokenHeadersOf(config),

    /** The authorization request (RFC 6749 §4.1.1) with a PKCE S256 challenge (RFC 7636 §4.3). */
    startConsent: async (ctx, input) => {
      const scope = scopeOf(ctx.config);
      if (ctx.config.scopes?.includes('openid') && !ctx.config.issuer) {
        // The ID token that comes back is checked against the issuer (OIDC Core §3.1.3.7).
        throw new ConfigError(`providers.${ctx.providerId}.issuer: required with scope openid`);
      }
      const metadata = await server(ctx, input.connectionParams);
      if (!metadata.authorization_endpoint) {
        throw new ConfigError(
          `providers.${ctx.providerId}: the issuer's metadata has no authorization_endpoint`,
        );
      }
      const secret = await ctx.secret();
      const url = new URL(metadata.authorization_endpoint);
      for (const [name, value] of Object.entries(ctx.config.authorizationParams ?? {})) {
        url.searchParams.set(name, value);
      }
      url.searchParams.set('response_type', 'code');
      url.searchParams.set('client_id', secret.client_id!);
      url.searchParams.set('redirect_uri', input.callbackUrl);
      url.searchParams.set('state', input.state);
      if (scope) url.searchParams.set(ctx.config.scopeParam ?? 'scope', scope);
      if (ctx.config.pkce === false) return { authorizationUrl: url.toString() };
      const codeVerifier = oauth.generateRandomCodeVerifier();
      url.searchParams.set('code_challenge', await oauth.calculatePKCECodeChallenge(codeVerifier));
      url.searchParams.set('code_challenge_method', 'S256');
      return { authorizationUrl: url.toString(), flowSecrets: { code_verifier: codeVerifier } };
    },

    /**
     * RFC 9207 §2.4: with an issuer configured, a redirect (an error one too) carrying another
     * `iss` is refused; one carrying none is, when the entry's own URLs say the server sends it
     * (discovered metadata may say otherwise: completeConsent checks against it). RFC 6749
     * §4.1.2: a success carries `code`, an error `error`.
     */
    checkCallback: (ctx, params) => {
      const { issuer, authorizationUrl, tokenUrl } = ctx.config;
      if (issuer !== undefined && params.iss !== undefined && params.iss !== issuer) {
        return {
          ok: false,
          message: `The ${ctx.providerId} callback carried another issuer (iss) than the configured one.`,
        };
      }
      if (issuer !== undefined && params.iss === undefined && authorizationUrl && tokenUrl) {
        return { ok: false, message: `The ${ctx.providerId} callback carried no iss.` };
      }
      if (params.error === undefined && !params.code) {
        return { ok: false, message: `The ${ctx.providerId} callback carried no code.` };
      }
      return { ok: true };
    },

    /** The callback, then the code exchange (RFC 6749 §4.1.3) with the PKCE verifier. */
    completeConsent: async (ctx, input) => {
      const metadata = await server(ctx, input.connectionParams);
      const secret = await ctx.secret();
      const client: oauth.Client = { client_id: secret.client_id! };
      const params = callbackParams(ctx, metadata, client, input.params, input.state);
      return tokenCall(
        ctx,
        `${ctx.providerId} code exchange`,
        // Not retried: a code is single use.
        {
          retrySafe: false,
          tokenEndpoint: metadata.token_endpoint!,
          additionalParameters: ctx.config.tokenParams ?? {},
        },
        (options) =>
          oauth.authorizationCodeGrantRequest(
            metadata,
            client,
            clientAuthentication(ctx.config, secret),
            params,
            input.callbackUrl,
            // A flow started with PKCE off carries no verifier.
            input.flowSecrets.code_verifier ?? oauth.nopkce,
            options,
          ),
        (response) => oauth.processAuthorizationCodeResponse(metadata, client, response),
        {
          callback: input.params,
          ...(input.connectionParams ? { connectionParams: input.connectionParams } : {}),
        },
      );
    },

    refresh,
  };
}

export const oauth2: KindProtocol<OAuth2Config> = {
  kind: 'oauth2',
  protocol: (config) =>
    config.grant === 'client_credentials' ? clientCredentials(config) : authorizationCode(config),
};
