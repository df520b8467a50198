import { timingSafeEqual } from 'node:crypto';
import {
  AccessDeniedError,
  InvalidRequestError,
  NeedsReauthError,
  ProviderRejectedError,
  ProviderUnavailableError,
} from '../errors.ts';
import { isUnderUrlPrefix } from '../url-prefix.ts';
import { fillTemplate } from './common.ts';
import type { OAuth1Config } from './config/oauth1.ts';
import type { ProviderResponse } from './http.ts';
import {
  oauth1Authorization,
  readOAuthForm,
  type OAuth1Credentials,
  type OAuth1SignatureMethod,
} from './oauth1-signing.ts';
import type { KindProtocol, ProviderContext, RequestSigningProtocol } from './types.ts';

/**
 * Any OAuth 1.0a three-legged provider (RFC 5849), from configuration alone. Access credentials
 * do not expire: nothing to refresh, and the token function signs requests (`sign`) under the
 * provider's API base URL rather than handing out the token secret. The entry's schema is
 * config/oauth1.ts.
 */

/** Fills the entry's URL templates ({baseUrl}, its params). */
function url(ctx: ProviderContext<OAuth1Config>, template: string, field: string, extra = {}) {
  return fillTemplate(
    template,
    { baseUrl: ctx.baseUrl, ...ctx.config.params, ...extra },
    `providers.${ctx.providerId}.${field}`,
  );
}

/** The API base whose requests `sign` signs: the entry's apiBaseUrl, else the base URL. */
export function oauth1ApiBaseUrl(ctx: ProviderContext<OAuth1Config>): string {
  const template = ctx.config.apiBaseUrl ?? '{baseUrl}';
  return url(ctx, template, 'apiBaseUrl').replace(/\/+$/, '');
}

function signOptions(ctx: ProviderContext<OAuth1Config>) {
  return {
    now: ctx.now(),
    ...(ctx.config.signatureMethod ? { signatureMethod: ctx.config.signatureMethod } : {}),
    ...(ctx.config.includeVersion === false ? { includeVersion: false } : {}),
  } satisfies { now: number; signatureMethod?: OAuth1SignatureMethod; includeVersion?: boolean };
}

async function consumer(ctx: ProviderContext<OAuth1Config>): Promise<OAuth1Credentials> {
  const secret = await ctx.secret();
  return { consumerKey: secret.consumer_key!, consumerSecret: secret.consumer_secret! };
}

/**
 * Reads a credentials answer (RFC 5849 §2.1, §2.3) as form-encoded whatever its Content-Type
 * (some servers label it text/html). A 2xx carrying `oauth_problem` is a refusal; one missing a
 * required field is garbage (transient, as for the other kinds). Values never reach a message.
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

function sameValue(a: string, b: string): boolean {
  const left = Buffer.from(a);
  const right = Buffer.from(b);
  return left.length === right.length && timingSafeEqual(left, right);
}

const protocol: RequestSigningProtocol<OAuth1Config> = {
  kind: 'oauth1',
  variant: 'request-signing',
  secretFields: ['consumer_key', 'consumer_secret'],

  /**
   * RFC 5849 §2.1: the request-token call with `oauth_callback` in the signed header (consumer
   * secret only) → temporary credentials. Our `state` rides in the callback URL itself, so the
   * callback finds its flow even when the provider reports a refusal without `oauth_token`
   * (`oauth_problem=user_refused` alone). Not retried: a repeat would reuse the nonce, and the
   * person can simply press Connect again.
   */
  startConsent: async (ctx, input) => {
    const label = `${ctx.providerId} request token`;
    const callback = new URL(input.callbackUrl);
    callback.searchParams.set('state', input.state);
    const callbackUrl = callback.toString();
    const requestUrl = url(ctx, ctx.config.requestTokenUrl, 'requestTokenUrl');
    const authorization = oauth1Authorization(
      { method: 'POST', url: requestUrl },
      await consumer(ctx),
      { ...signOptions(ctx), protocolParams: { oauth_callback: callbackUrl } },
    );
    const temporary = await ctx.http(
      { label, method: 'POST', url: requestUrl, headers: { authorization }, retrySafe: false },
      (response) => readCredentials(response, label),
    );
    // §2.1: MUST be present and "true"; without it the server speaks OAuth 1.0, not 1.0a, and
    // would not send the verifier that protects the exchange.
    if (temporary.fields.oauth_callback_confirmed !== 'true') {
      throw new ProviderRejectedError(`The ${label} answer did not confirm the callback.`);
    }
    return {
      authorizationUrl: url(ctx, ctx.config.authorizeUrl, 'authorizeUrl', {
        oauth_token: encodeURIComponent(temporary.token),
      }),
      flowSecrets: { requestToken: temporary.token, requestTokenSecret: temporary.secret },
      callbackUrl,
    };
  },

  /** §2.2: an authorized request token comes back with its verifier; a refusal passes as is. */
  checkCallback: (ctx, params) => {
    if (params.oauth_problem !== undefined || params.denied !== undefined) return { ok: true };
    for (const name of ['oauth_token', 'oauth_verifier']) {
      if (!params[name]) {
        return { ok: false, message: `The ${ctx.providerId} callback carried no ${name}.` };
      }
    }
    return { ok: true };
  },

  /**
   * RFC 5849 §2.3: the access-token call with `oauth_token` and `oauth_verifier`, signed with the
   * consumer secret and the request-token secret → token credentials, which do not expire.
   */
  completeConsent: async (ctx, input) => {
    const { params } = input;
    // A refusal comes back as oauth_problem (user_refused: OAuth problem reporting) or, on some
    // servers, `denied=<request token>`; either ends the attempt without credentials.
    if (params.oauth_problem !== undefined || params.denied !== undefined) {
      throw new AccessDeniedError();
    }
    const requestToken = params.oauth_token;
    const verifier = params.oauth_verifier;
    const { requestToken: expected, requestTokenSecret } = input.flowSecrets;
    if (!requestToken) {
      throw new InvalidRequestError(`The ${ctx.providerId} callback carried no oauth_token.`);
    }
    if (!verifier) {
      throw new InvalidRequestError(`The ${ctx.providerId} callback carried no oauth_verifier.`);
    }
    if (!requestTokenSecret || !expected) {
      throw new InvalidRequestError(
        `The ${ctx.providerId} connection attempt kept no request token.`,
      );
    }
    // The request token the person authorized must be the one this flow asked for.
    if (!sameValue(requestToken, expected)) {
      throw new InvalidRequestError(
        `The ${ctx.providerId} callback carried another request token than this attempt's.`,
      );
    }

    const label = `${ctx.providerId} access token`;
    const accessUrl = url(ctx, ctx.config.accessTokenUrl, 'accessTokenUrl');
    const authorization = oauth1Authorization(
      { method: 'POST', url: accessUrl },
      { ...(await consumer(ctx)), token: requestToken, tokenSecret: requestTokenSecret },
      { ...signOptions(ctx), protocolParams: { oauth_verifier: verifier } },
    );
    // Not retried: the request token is single use (§2.3), a repeat could only be refused.
    const credentials = await ctx.http(
      { label, method: 'POST', url: accessUrl, headers: { authorization }, retrySafe: false },
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
    const apiBase = oauth1ApiBaseUrl(ctx);
    if (!isUnderUrlPrefix(request.url, [apiBase])) {
      throw new InvalidRequestError(
        `Invalid request: sign.url: not under the ${ctx.providerId} API (${apiBase}; apiBaseUrl in broker.config.json).`,
      );
    }
    return oauth1Authorization(
      request,
      { ...(await consumer(ctx)), token: tokens.accessToken, tokenSecret: tokens.tokenSecret },
      signOptions(ctx),
    );
  },
};

export const oauth1: KindProtocol<OAuth1Config> = {
  kind: 'oauth1',
  protocol: () => protocol,
};
