import {
  AccessDeniedError,
  asGrantRefused,
  InvalidRequestError,
  ProviderRejectedError,
  ProviderUnavailableError,
} from '../errors.ts';
import { fillTemplate } from './common.ts';
import type { QuickoConfig } from './config/quicko.ts';
import { isRecord, parseJson, readOAuthTokenFields, type ProviderResponse } from './http.ts';
import type {
  KindProtocol,
  ProviderContext,
  SealedCache,
  TokenSet,
  UserConsentProtocol,
} from './types.ts';

/**
 * Quicko: a custom redirect flow ("request_token"), exchanged with an API-user token
 * (../shared/seeds/000, providers.md "Quicko"). The entry's schema is config/quicko.ts.
 */

/**
 * The API-user token is cached a little shorter than its lifetime, so no call goes out with one
 * about to lapse; a clock skew beyond that is caught by the re-authentication on 401/403.
 */
const API_USER_TOKEN_MARGIN_MS = 10 * 60 * 1000;
const API_USER_TOKEN_CACHE = 'api-user-token';

function url(ctx: ProviderContext<QuickoConfig>, template: string, field: string): string {
  return fillTemplate(
    template,
    { baseUrl: ctx.baseUrl, ...ctx.config.params },
    `providers.${ctx.providerId}.${field}`,
  );
}

function apiHeaders(ctx: ProviderContext<QuickoConfig>): Record<string, string> {
  return { accept: 'application/json', 'x-api-version': ctx.config.apiVersion };
}

/**
 * Reads a Quicko answer: `{code, message}` with a non-2xx code is a refusal (or transient for
 * 5xx/429) even when the HTTP status said 200; otherwise the fields sit under `data` (v2
 * envelope) or at the root (both occur; providers.md "Quicko").
 */
function readQuickoBody(response: ProviderResponse, label: string): Record<string, unknown> {
  const body = parseJson(response, label);
  const code = Number(body.code);
  if (body.code !== undefined && Number.isInteger(code) && (code < 200 || code >= 300)) {
    if (code === 429 || code >= 500) {
      throw new ProviderUnavailableError(`The ${label} answer carried code ${code}.`, {
        status: code,
      });
    }
    throw new ProviderRejectedError(`The ${label} call was refused (code ${code}).`, {
      status: code,
    });
  }
  return isRecord(body.data) && body.data.access_token !== undefined ? body.data : body;
}

// One /authenticate in flight per provider and container: concurrent exchanges on a cold cache
// share it rather than each minting an API-user token.
const authenticating = new WeakMap<SealedCache, Promise<string>>();

/**
 * The API-user token (`POST /authenticate`, x-api-key + x-api-secret; lasts 24 h), from the
 * encrypted provider-wide cache unless `fresh`. Repeating the call is harmless: retry-safe.
 */
async function apiUserToken(
  ctx: ProviderContext<QuickoConfig>,
  fresh: boolean,
): Promise<{ token: string; cached: boolean }> {
  if (!fresh) {
    const cached = await ctx.sealedCache.get(API_USER_TOKEN_CACHE);
    if (cached) return { token: cached, cached: true };
  }
  let pending = authenticating.get(ctx.sealedCache);
  if (!pending) {
    pending = authenticate(ctx).finally(() => authenticating.delete(ctx.sealedCache));
    authenticating.set(ctx.sealedCache, pending);
  }
  return { token: await pending, cached: false };
}

async function authenticate(ctx: ProviderContext<QuickoConfig>): Promise<string> {
  const secret = await ctx.secret();
  const label = 'quicko authenticate';
  const token = await ctx.http(
    {
      label,
      method: 'POST',
      url: url(ctx, ctx.config.authenticateUrl, 'authenticateUrl'),
      headers: {
        ...apiHeaders(ctx),
        'x-api-key': secret.api_key!,
        'x-api-secret': secret.api_secret!,
      },
      retrySafe: true,
    },
    (response) => {
      const token = readQuickoBody(response, label).access_token;
      if (typeof token !== 'string' || token.length === 0) {
        throw new ProviderUnavailableError(`The ${label} answer carried no access token.`);
      }
      return token;
    },
  );
  await ctx.sealedCache.put(
    API_USER_TOKEN_CACHE,
    token,
    ctx.now() + ctx.config.apiUserTokenLifetimeSeconds * 1000 - API_USER_TOKEN_MARGIN_MS,
  );
  return token;
}

/**
 * `POST /oauth/authorize?request_token=…` with a request token (consent) or a refresh token
 * (renewal). The token rides in the query string because the API takes it there; it never
 * appears in a label, message or log. A 401/403 with a cached API-user token may mean that token
 * lapsed (403 "Access token has expired"): authenticate afresh and try exactly once more. A 403
 * with a fresh API-user token is about the request or refresh token (providers.md "errors": 401
 * is our key or secret, 403 an invalid, expired or revoked token); on a refresh it is marked
 * `grantRefused`. A refusal of /authenticate itself never is: that is our api_secret.
 */
async function authorize(
  ctx: ProviderContext<QuickoConfig>,
  requestToken: string,
  label: string,
  retrySafe: boolean,
  refreshing: boolean,
): Promise<TokenSet> {
  const send = async (apiUser: string) => {
    const secret = await ctx.secret();
    return ctx.http(
      {
        label,
        method: 'POST',
        url: `${url(ctx, ctx.config.authorizeUrl, 'authorizeUrl')}?${new URLSearchParams({ [ctx.config.requestTokenParam]: requestToken })}`,
        // Bare token, no "Bearer": providers.md "authorization header" (VERIFIED).
        headers: { ...apiHeaders(ctx), 'x-api-key': secret.api_key!, authorization: apiUser },
        retrySafe,
      },
      (response) => readTokens(ctx, response, label),
    );
  };
  // Only for a refusal sent with a fresh API-user token.
  const refusedGrant = (error: unknown) =>
    refreshing && error instanceof ProviderRejectedError && error.status === 403
      ? asGrantRefused(error)
      : error;
  const first = await apiUserToken(ctx, false);
  try {
    return await send(first.token);
  } catch (error) {
    if (!first.cached) throw refusedGrant(error);
    const refusedApiUser =
      error instanceof ProviderRejectedError && (error.status === 401 || error.status === 403);
    if (!refusedApiUser) throw error;
  }
  const fresh = await apiUserToken(ctx, true);
  try {
    return await send(fresh.token);
  } catch (error) {
    throw refusedGrant(error);
  }
}

function readTokens(
  ctx: ProviderContext<QuickoConfig>,
  response: ProviderResponse,
  label: string,
): TokenSet {
  const now = ctx.now();
  const fields = readOAuthTokenFields(readQuickoBody(response, label), label, now);
  return {
    accessToken: fields.accessToken,
    // A bearer token in RFC 6750's sense (Quicko names no type); the header form is bare, see
    // `authorization` below.
    tokenType: 'Bearer',
    // Access tokens last 24 h (seed doc, "Access Token"), unless the answer says otherwise.
    expiresAt: fields.expiresAt ?? now + ctx.config.accessTokenLifetimeSeconds * 1000,
    ...(fields.refreshToken
      ? {
          refreshToken: fields.refreshToken,
          refreshTokenExpiresAt: now + ctx.config.refreshTokenLifetimeSeconds * 1000,
        }
      : {}),
  };
}

const protocol: UserConsentProtocol<QuickoConfig> = {
  kind: 'quicko',
  variant: 'user-consent',
  secretFields: ['api_key', 'api_secret'],

  /**
   * Consent page with `api_key` and our callback URL (base64 by default). Quicko sends no `state`
   * back, so the state rides inside the callback URL itself.
   */
  startConsent: async (ctx, input) => {
    const callback = new URL(input.callbackUrl);
    callback.searchParams.set('state', input.state);
    const callbackUrl = callback.toString();
    const secret = await ctx.secret();
    const consent = new URL(url(ctx, ctx.config.consentUrl, 'consentUrl'));
    consent.searchParams.set('api_key', secret.api_key!);
    consent.searchParams.set(
      ctx.config.redirectParam,
      ctx.config.redirectEncoding === 'plain'
        ? callbackUrl
        : Buffer.from(callbackUrl).toString('base64'),
    );
    if (ctx.config.options) {
      consent.searchParams.set(
        'options',
        Buffer.from(JSON.stringify(ctx.config.options)).toString('base64'),
      );
    }
    return { authorizationUrl: consent.toString(), callbackUrl };
  },

  checkCallback: (ctx, params) => {
    const { deniedWhen, requestTokenParam } = ctx.config;
    return params[deniedWhen.param] === deniedWhen.equals || params[requestTokenParam]
      ? { ok: true }
      : { ok: false, message: `The ${ctx.providerId} callback carried no ${requestTokenParam}.` };
  },

  completeConsent: async (ctx, input) => {
    const { deniedWhen, requestTokenParam } = ctx.config;
    if (input.params[deniedWhen.param] === deniedWhen.equals) throw new AccessDeniedError();
    const requestToken = input.params[requestTokenParam];
    if (!requestToken) {
      throw new InvalidRequestError(
        `The ${ctx.providerId} callback carried no ${requestTokenParam}.`,
      );
    }
    // Single use: a retry after a lost answer could only be refused.
    return authorize(ctx, requestToken, 'quicko authorize', false, false);
  },

  // The same endpoint with the refresh token as request_token; the answer carries no new refresh
  // token (quicko-connect "OAuth Authorize"), so the core keeps the old one. Refresh tokens are
  // not rotated, so repeating a refresh that failed transiently loses nothing.
  refresh: async (ctx, current) => {
    if (!current.refreshToken) {
      throw new ProviderRejectedError('The quicko connection holds no refresh token.', {
        grantRefused: true,
      });
    }
    return authorize(ctx, current.refreshToken, 'quicko refresh', true, true);
  },

  // Quicko's APIs take their tokens bare in Authorization, without "Bearer" (providers.md).
  authorization: (tokens) => tokens.accessToken,

  /** Quicko's APIs want the API key (an identifier, not the secret) and version on every call. */
  async apiHeaders(ctx) {
    const secret = await ctx.secret();
    return { 'x-api-key': secret.api_key!, 'x-api-version': ctx.config.apiVersion };
  },
};

export const quicko: KindProtocol<QuickoConfig> = {
  kind: 'quicko',
  protocol: () => protocol,
};
