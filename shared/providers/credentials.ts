import { InvalidRequestError, ProviderRejectedError } from '../errors.ts';
import { fillTemplate } from './common.ts';
import type { ApiKeyConfig, BasicConfig } from './config/credentials.ts';
import type {
  KindProtocol,
  ProvidedCredentialsProtocol,
  ProviderContext,
  TokenSet,
} from './types.ts';

/**
 * The `api_key` and `basic` kinds: credentials a person (or the platform team) supplies instead
 * of an OAuth grant, sent in the headers the entry declares, optionally checked with a
 * verification request before they are stored (their entries: config/credentials.ts).
 */

type CredentialsConfig = ApiKeyConfig | BasicConfig;

/** Fills `{credentials.<field>}`, `{apiBaseUrl}`, `{baseUrl}` and params in a template. */
function fill(
  ctx: ProviderContext<CredentialsConfig>,
  template: string,
  credentials: Record<string, string>,
  field: string,
  encode: (value: string) => string = (value) => value,
): string {
  const apiBaseUrl = ctx.config.apiBaseUrl
    ? fillTemplate(ctx.config.apiBaseUrl, { baseUrl: ctx.baseUrl, ...ctx.config.params }, field)
    : ctx.baseUrl;
  return fillTemplate(
    template,
    {
      baseUrl: ctx.baseUrl,
      apiBaseUrl: apiBaseUrl.replace(/\/+$/, ''),
      ...ctx.config.params,
      ...Object.fromEntries(
        Object.entries(credentials).map(([name, value]) => [`credentials.${name}`, encode(value)]),
      ),
    },
    `providers.${ctx.providerId}.${field}`,
  );
}

/** The headers the API wants: the entry's, filled, plus Basic authentication for `basic`. */
function credentialHeaders(
  ctx: ProviderContext<CredentialsConfig>,
  credentials: Record<string, string>,
): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const [name, template] of Object.entries(ctx.config.headers ?? {})) {
    headers[name] = fill(ctx, template, credentials, `headers.${name}`);
  }
  if (ctx.config.kind === 'basic') {
    // RFC 7617 §2: user-id ":" password, UTF-8, base64.
    const pair = `${credentials.username ?? ''}:${credentials.password ?? ''}`;
    headers.Authorization = `Basic ${Buffer.from(pair, 'utf8').toString('base64')}`;
  }
  return headers;
}

/**
 * Checks the values a person or the platform team supplied against the entry (every field given,
 * patterns met, nothing else), then, when the entry says how, proves them with one request to the
 * API before anything is stored. Messages name fields, never values.
 */
async function acceptCredentials(
  ctx: ProviderContext<CredentialsConfig>,
  given: Record<string, string>,
): Promise<TokenSet> {
  const fields = ctx.config.credentialFields;
  const credentials: Record<string, string> = {};
  for (const name of Object.keys(given)) {
    if (!Object.hasOwn(fields, name)) {
      throw new InvalidRequestError(
        `Invalid request: credentials.${name}: ${ctx.providerId} takes ${Object.keys(fields).join(', ')}.`,
      );
    }
  }
  for (const [name, field] of Object.entries(fields)) {
    const value = given[name];
    if (typeof value !== 'string' || value.length === 0 || value.length > 4096) {
      throw new InvalidRequestError(
        `Invalid request: credentials.${name}: ${field.label} is required.`,
      );
    }
    if (field.pattern && !new RegExp(field.pattern).test(value)) {
      throw new InvalidRequestError(
        `Invalid request: credentials.${name}: this is not a valid ${field.label}.`,
      );
    }
    credentials[name] = value;
  }
  const verify = ctx.config.verify;
  if (verify) {
    const label = `${ctx.providerId} verification`;
    const url = fill(ctx, verify.url, credentials, 'verify.url', encodeURIComponent);
    let status: number;
    try {
      status = await ctx.http(
        {
          label,
          method: verify.method,
          url,
          headers: { accept: 'application/json', ...credentialHeaders(ctx, credentials) },
          retrySafe: verify.method === 'GET',
        },
        (response) => response.status,
      );
    } catch (error) {
      if (
        error instanceof ProviderRejectedError &&
        (error.status === 401 || error.status === 403)
      ) {
        throw new InvalidRequestError(
          `${ctx.config.displayName ?? ctx.providerId} refused these credentials (HTTP ${error.status}): check the ${Object.values(
            fields,
          )
            .map((field) => field.label)
            .join(' and ')}.`,
        );
      }
      throw error;
    }
    if (!verify.expectStatus.includes(status)) {
      throw new InvalidRequestError(
        `${ctx.config.displayName ?? ctx.providerId} did not accept these credentials (HTTP ${status}).`,
      );
    }
  }
  return {
    accessToken: '',
    tokenType: ctx.config.kind === 'basic' ? 'Basic' : 'ApiKey',
    credentials,
  };
}

function credentialsProtocol(
  kind: 'api_key' | 'basic',
): ProvidedCredentialsProtocol<CredentialsConfig> {
  return {
    kind,
    variant: 'provided-credentials',
    // The credentials are the connection's own, stored encrypted with it: no provider secret.
    secretFields: [],
    accept: acceptCredentials,
    headers: (ctx, tokens) => credentialHeaders(ctx, tokens.credentials ?? {}),
  };
}

export const apiKey: KindProtocol<ApiKeyConfig> = {
  kind: 'api_key',
  protocol: () => credentialsProtocol('api_key'),
};

export const basic: KindProtocol<BasicConfig> = {
  kind: 'basic',
  protocol: () => credentialsProtocol('basic'),
};
