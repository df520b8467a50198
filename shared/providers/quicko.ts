import { Type, type Static } from '@sinclair/typebox';
import {
  AccessDeniedError,
  asGrantRefused,
  InvalidRequestError,
  ProviderRejectedError,
  ProviderUnavailableError,
} from '../errors.ts';
import { commonProviderFields } from './common.ts';
import { isRecord, parseJson, readOAuthTokenFields, type ProviderResponse } from './http.ts';
import type {
  ProviderContext,
  ProviderKind,
  SealedCache,
  TokenSet,
  UserConsentProtocol,
} from './types.ts';

/**
 * Quicko: a custom redirect flow ("request_token"), exchanged with an API-user token
 * (../shared/seeds/000, providers.md "Quicko").
 */
const configSchema = Type.Object(
  {
    kind: Type.Literal('quicko'),
    environment: Type.Union(
      [
        Type.Literal('production'),
        Type.Literal('test'),
        Type.Literal('quicko'),
        Type.Literal('sandbox'),
      ],
      {
        description:
          'production: api.sandbox.co.in; test: test-api.sandbox.co.in; quicko: api.quicko.com (Quicko Connect); sandbox: npm start.',
      },
    ),
    consentUrl: Type.Optional(
      Type.String({
        format: 'uri',
        pattern: '^https?://',
        description:
          "Quicko's consent (OAuth login) page. Default: https://oauth.quicko.com/login (an older doc); for environment sandbox, <baseUrl>/login.",
      }),
    ),
    redirectParam: Type.Optional(
      Type.String({
        pattern: '^[A-Za-z0-9_.-]{1,64}$',
        description:
          'Name of the consent-page parameter carrying our callback URL: "redirect" (default, current docs) or "redirect_url" (older doc).',
      }),
    ),
    redirectEncoding: Type.Optional(
      Type.Union([Type.Literal('base64'), Type.Literal('plain')], {
        description: 'How the callback URL is encoded in that parameter; the docs say base64.',
      }),
    ),
    options: Type.Optional(
      Type.Record(Type.String(), Type.Unknown(), {
        description: 'Options sent to the consent page as base64-encoded JSON (`options`).',
      }),
    ),
    apiVersion: Type.Optional(
      Type.String({
        pattern: '^[0-9A-Za-z.]{1,16}$',
        description: 'The x-api-version header (default "1.0").',
      }),
    ),
    ...commonProviderFields,
  },
  { additionalProperties: false },
);
export type QuickoConfig = Static<typeof configSchema>;

/** Where the older doc puts the consent page; the current docs leave the host unstated. */
export const defaultQuickoConsentUrl = 'https://oauth.quicko.com/login';
/** Request tokens, API-user tokens and access tokens all last 24 h; refresh tokens 1 year. */
const DAY_MS = 24 * 60 * 60 * 1000;
const REFRESH_TOKEN_LIFETIME_MS = 365 * DAY_MS;
/**
 * The API-user token is cached a little shorter than its 24 h, so no call goes out with one about
 * to lapse; a clock skew beyond that is caught by the re-authentication on 401/403.
 */
const API_USER_TOKEN_MARGIN_MS = 10 * 60 * 1000;
const API_USER_TOKEN_CACHE = 'api-user-token';

/**
 * The consent page: the configured one, else for the sandbox the sandbox's own page (its API and
 * consent app share one base), else the documented host.
 */
export function quickoConsentUrl(ctx: ProviderContext<QuickoConfig>): string {
  if (ctx.config.consentUrl) return ctx.config.consentUrl;
  return ctx.config.environment === 'sandbox' ? `${ctx.baseUrl}/login` : defaultQuickoConsentUrl;
}

function apiHeaders(ctx: ProviderContext<QuickoConfig>): Record<string, string> {
  return { accept: 'application/json', 'x-api-version': ctx.config.apiVersion ?? '1.0' };
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
      url: `${ctx.baseUrl}/authenticate`,
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
    ctx.now() + DAY_MS - API_USER_TOKEN_MARGIN_MS,
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
        url: `${ctx.baseUrl}/oauth/authorize?${new URLSearchParams({ request_token: requestToken })}`,
        // Bare token, no "Bearer": providers.md "authorization header" (VERIFIED).
        headers: { ...apiHeaders(ctx), 'x-api-key': secret.api_key!, authorization: apiUser },
        retrySafe,
      },
      (response) => readTokens(response, label, ctx.now()),
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

function readTokens(response: ProviderResponse, label: string, now: number): TokenSet {
  const fields = readOAuthTokenFields(readQuickoBody(response, label), label, now);
  return {
    accessToken: fields.accessToken,
    // A bearer token in RFC 6750's sense (Quicko names no type); the header form is bare, see
    // `authorization` below.
    tokenType: 'Bearer',
    // Access tokens last 24 h (seed doc, "Access Token"), unless the answer says otherwise.
    expiresAt: fields.expiresAt ?? now + DAY_MS,
    ...(fields.refreshToken
      ? {
          refreshToken: fields.refreshToken,
          refreshTokenExpiresAt: now + REFRESH_TOKEN_LIFETIME_MS,
        }
      : {}),
  };
}

const protocol: UserConsentProtocol<QuickoConfig> = {
  kind: 'quicko',
  variant: 'user-consent',
  // The refresh token lasts a year and cannot be renewed: ask the person to connect again two
  // weeks before it ends (the Connection Needs Reauth event is the team's cue).
  reauthLeadSeconds: 14 * 24 * 3600,
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
    const url = new URL(quickoConsentUrl(ctx));
    url.searchParams.set('api_key', secret.api_key!);
    url.searchParams.set(
      ctx.config.redirectParam ?? 'redirect',
      ctx.config.redirectEncoding === 'plain'
        ? callbackUrl
        : Buffer.from(callbackUrl).toString('base64'),
    );
    if (ctx.config.options) {
      url.searchParams.set(
        'options',
        Buffer.from(JSON.stringify(ctx.config.options)).toString('base64'),
      );
    }
    return { authorizationUrl: url.toString(), callbackUrl };
  },

  completeConsent: async (ctx, input) => {
    if (input.params.status === 'cancelled') throw new AccessDeniedError();
    const requestToken = input.params.request_token;
    if (!requestToken) {
      throw new InvalidRequestError('The quicko callback carried no request_token.');
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
    return { 'x-api-key': secret.api_key!, 'x-api-version': ctx.config.apiVersion ?? '1.0' };
  },
};

export const quicko: ProviderKind<QuickoConfig> = {
  kind: 'quicko',
  configSchema,
  hosts: {
    production: 'https://api.sandbox.co.in',
    test: 'https://test-api.sandbox.co.in',
    quicko: 'https://api.quicko.com',
  },
  protocol: () => protocol,
};
