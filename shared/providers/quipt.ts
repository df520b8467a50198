import { Type, type Static } from '@sinclair/typebox';
import {
  AccessDeniedError,
  InvalidRequestError,
  NeedsReauthError,
  ProviderRejectedError,
  ProviderUnavailableError,
} from '../errors.ts';
import { isUnderUrlPrefix } from '../url-prefix.ts';
import { commonProviderFields } from './common.ts';
import type { ProviderResponse } from './http.ts';
import { oauth1Authorization, readOAuthForm, type OAuth1Credentials } from './oauth1.ts';
import type { ProviderContext, ProviderKind, RequestSigningProtocol } from './types.ts';

/**
 * Quipt: OAuth 1.0a three-legged, HMAC-SHA1 (../shared/seeds/003, providers.md "Quipt").
 * Access credentials do not expire: nothing to refresh, and the token function signs requests
 * (`sign`) rather than handing out the token secret.
 */
const configSchema = Type.Object(
  {
    kind: Type.Literal('quipt'),
    environment: Type.Union([Type.Literal('production'), Type.Literal('sandbox')], {
      description:
        'production: app.getquipt.com (OAuth) and api.getquipt.com/v2; sandbox: npm start.',
    }),
    authorizeUrlTemplate: Type.Optional(
      Type.String({
        pattern: '^(https?://|\\{base\\}).*\\{oauth_token\\}',
        description:
          'Where the browser goes to authorize; {oauth_token} is the request token, {base} the OAuth host (baseUrl). Default: {base}/#/oauth/authorizing?oauth_token={oauth_token} (the documented page); for environment sandbox, {base}/oauth/authorizing?oauth_token={oauth_token}.',
      }),
    ),
    apiBaseUrl: Type.Optional(
      Type.String({
        pattern: '^https?://',
        description:
          'Base URL of the Quipt API whose requests the broker signs. Default https://api.getquipt.com/v2; for environment sandbox, <baseUrl>/v2.',
      }),
    ),
    ...commonProviderFields,
  },
  { additionalProperties: false },
);
export type QuiptConfig = Static<typeof configSchema>;

/** The documented authorize page; its `#` puts the route in the fragment of a single-page app. */
export const defaultQuiptAuthorizeUrlTemplate =
  '{base}/#/oauth/authorizing?oauth_token={oauth_token}';
/**
 * The sandbox serves the page at a real path: a fragment never reaches a server, and a page that
 * read it would need script.
 */
const sandboxQuiptAuthorizeUrlTemplate = '{base}/oauth/authorizing?oauth_token={oauth_token}';
export const defaultQuiptApiBaseUrl = 'https://api.getquipt.com/v2';

/** The authorize page for a request token (providers.md "authorize": the template is configurable). */
export function quiptAuthorizeUrl(ctx: ProviderContext<QuiptConfig>, requestToken: string): string {
  const template =
    ctx.config.authorizeUrlTemplate ??
    (ctx.config.environment === 'sandbox'
      ? sandboxQuiptAuthorizeUrlTemplate
      : defaultQuiptAuthorizeUrlTemplate);
  return template
    .replaceAll('{base}', ctx.baseUrl)
    .replaceAll('{oauth_token}', encodeURIComponent(requestToken));
}

/** The API base: configured, else the sandbox's /v2, else the documented host. */
export function quiptApiBaseUrl(ctx: ProviderContext<QuiptConfig>): string {
  if (ctx.config.apiBaseUrl) return ctx.config.apiBaseUrl.replace(/\/+$/, '');
  return ctx.config.environment === 'sandbox' ? `${ctx.baseUrl}/v2` : defaultQuiptApiBaseUrl;
}

async function consumer(ctx: ProviderContext<QuiptConfig>): Promise<OAuth1Credentials> {
  const secret = await ctx.secret();
  return { consumerKey: secret.consumer_key!, consumerSecret: secret.consumer_secret! };
}

/**
 * Reads a credentials answer (RFC 5849 §2.1, §2.3) as form-encoded whatever its Content-Type
 * (providers.md). A 2xx carrying `oauth_problem` is a refusal; one missing a required field is
 * garbage (transient, as for the other kinds). Values never reach a message.
 */
function readCredentials(
  response: ProviderResponse,
  label: string,
): { token: string; secret: string; fields: Record<string, string> } {
  const fields = readOAuthForm(response.text);
  const problem = fields.oauth_problem;
  if (problem !== undefined) {
    const code = /^[a-z_]{1,64}$/.test(problem) ? problem : undefined;
    throw new ProviderRejectedError(`The ${label} call was refused${code ? ` (${code})` : ''}.`, {
      status: response.status,
      providerCode: code,
    });
  }
  const token = fields.oauth_token;
  const secret = fields.oauth_token_secret;
  if (!token || !secret) {
    throw new ProviderUnavailableError(
      `The ${label} answer carried no oauth_token and oauth_token_secret.`,
      { status: response.status },
    );
  }
  return { token, secret, fields };
}

const protocol: RequestSigningProtocol<QuiptConfig> = {
  kind: 'quipt',
  variant: 'request-signing',
  secretFields: ['consumer_key', 'consumer_secret'],

  /**
   * RFC 5849 §2.1: `POST /oauth/initiate` with `oauth_callback` in the signed header (consumer
   * secret only) → temporary credentials. Not retried: a repeat would reuse the nonce, and the
   * person can simply press Connect again.
   */
  startConsent: async (ctx, input) => {
    const label = 'quipt initiate';
    const url = `${ctx.baseUrl}/oauth/initiate`;
    const authorization = oauth1Authorization({ method: 'POST', url }, await consumer(ctx), {
      now: ctx.now(),
      protocolParams: { oauth_callback: input.callbackUrl },
    });
    const temporary = await ctx.http(
      { label, method: 'POST', url, headers: { authorization }, retrySafe: false },
      (response) => readCredentials(response, label),
    );
    // §2.1: MUST be present and "true"; without it the server speaks OAuth 1.0, not 1.0a, and
    // would not send the verifier that protects the exchange.
    if (temporary.fields.oauth_callback_confirmed !== 'true') {
      throw new ProviderRejectedError(`The ${label} answer did not confirm the callback.`);
    }
    return {
      authorizationUrl: quiptAuthorizeUrl(ctx, temporary.token),
      flowSecrets: { requestTokenSecret: temporary.secret },
      // The callback carries the request token, not our state (seed: "may be used as a state check").
      callbackHandle: temporary.token,
    };
  },

  // `denied=<request token>` is how some OAuth 1.0a servers report a refusal without oauth_token.
  callbackHandle: (params) => params.oauth_token || params.denied || undefined,

  /**
   * RFC 5849 §2.3: `POST /oauth/token` with `oauth_token` and `oauth_verifier`, signed with the
   * consumer secret and the request-token secret → token credentials, which do not expire.
   */
  completeConsent: async (ctx, input) => {
    const { params } = input;
    // Quipt reports a refusal as oauth_problem=user_refused (OAuth problem reporting); any other
    // problem, or a `denied` parameter, also ends the attempt without credentials.
    if (params.oauth_problem !== undefined || params.denied !== undefined) {
      throw new AccessDeniedError();
    }
    const requestToken = params.oauth_token;
    const verifier = params.oauth_verifier;
    if (!requestToken) throw new InvalidRequestError('The quipt callback carried no oauth_token.');
    if (!verifier) throw new InvalidRequestError('The quipt callback carried no oauth_verifier.');
    const requestTokenSecret = input.flowSecrets.requestTokenSecret;
    if (!requestTokenSecret) {
      throw new InvalidRequestError('The quipt connection attempt kept no request-token secret.');
    }

    const label = 'quipt token';
    const url = `${ctx.baseUrl}/oauth/token`;
    const authorization = oauth1Authorization(
      { method: 'POST', url },
      { ...(await consumer(ctx)), token: requestToken, tokenSecret: requestTokenSecret },
      { now: ctx.now(), protocolParams: { oauth_verifier: verifier } },
    );
    // Not retried: the request token is single use (§2.3), a repeat could only be refused.
    const credentials = await ctx.http(
      { label, method: 'POST', url, headers: { authorization }, retrySafe: false },
      (response) => readCredentials(response, label),
    );
    return { accessToken: credentials.token, tokenSecret: credentials.secret, tokenType: 'OAuth' };
  },

  /** RFC 5849 §3: every API call signed with the consumer secret and the token secret. */
  sign: async (ctx, tokens, request) => {
    if (!tokens.tokenSecret) {
      throw new NeedsReauthError(`The ${ctx.providerId} connection holds no token secret.`);
    }
    // Only requests to the provider's own API: a signed header for another host would hand that
    // host a replayable credential (and over http, to anyone on the path).
    if (!isUnderUrlPrefix(request.url, [quiptApiBaseUrl(ctx)])) {
      throw new InvalidRequestError(
        `Invalid request: sign.url: not under the ${ctx.providerId} API (${quiptApiBaseUrl(ctx)}; apiBaseUrl in broker.config.json).`,
      );
    }
    return oauth1Authorization(
      request,
      { ...(await consumer(ctx)), token: tokens.accessToken, tokenSecret: tokens.tokenSecret },
      { now: ctx.now() },
    );
  },
};

export const quipt: ProviderKind<QuiptConfig> = {
  kind: 'quipt',
  configSchema,
  // The OAuth host; the API's is apiBaseUrl (quiptApiBaseUrl).
  hosts: { production: 'https://app.getquipt.com' },
  protocol: () => protocol,
};
