import { Type, type Static } from '@sinclair/typebox';
import { asGrantRefused, ProviderRejectedError, ProviderUnavailableError } from '../errors.ts';
import { commonProviderFields } from './common.ts';
import { isRecord, parseJson, readOAuthTokenFields, type ProviderResponse } from './http.ts';
import type {
  ClientCredentialsProtocol,
  ProviderContext,
  ProviderKind,
  TokenSet,
} from './types.ts';

/**
 * Quidkey: client credentials plus a refresh endpoint, answers in a `{success,data}` envelope
 * (../shared/seeds/002, providers.md "Quidkey").
 */
const configSchema = Type.Object(
  {
    kind: Type.Literal('quidkey'),
    environment: Type.Union(
      [Type.Literal('production'), Type.Literal('development'), Type.Literal('sandbox')],
      { description: 'production: core.quidkey.com; development: core-dev; sandbox: npm start.' },
    ),
    refreshTokenLifetimeSeconds: Type.Optional(
      Type.Integer({
        minimum: 60,
        description: 'How long a refresh token lives; the docs say 24 hours (default 86400).',
      }),
    ),
    ...commonProviderFields,
  },
  { additionalProperties: false },
);
export type QuidkeyConfig = Static<typeof configSchema>;

/** Unwraps `{"success":true,"data":{…}}`; a `success:false` envelope is a refusal. */
function unwrapEnvelope(response: ProviderResponse, label: string): Record<string, unknown> {
  const body = parseJson(response, label);
  if (body.success === true && isRecord(body.data)) return body.data;
  if (body.success === false) {
    const error = isRecord(body.error) ? body.error : {};
    const code = typeof error.code === 'string' ? error.code : undefined;
    throw new ProviderRejectedError(`The ${label} call was refused${code ? ` (${code})` : ''}.`, {
      status: response.status,
      providerCode: code,
    });
  }
  throw new ProviderUnavailableError(`The ${label} answer was not a Quidkey envelope.`);
}

async function call(
  ctx: ProviderContext<QuidkeyConfig>,
  path: string,
  body: Record<string, string>,
  label: string,
): Promise<TokenSet> {
  const lifetime = (ctx.config.refreshTokenLifetimeSeconds ?? 86_400) * 1000;
  return ctx.http(
    {
      label,
      method: 'POST',
      url: `${ctx.baseUrl}${path}`,
      headers: { 'content-type': 'application/json', accept: 'application/json' },
      body: JSON.stringify(body),
      // Minting is harmless to repeat, and refresh tokens are not rotated (and if one ever is
      // refused, the core falls back to minting), so both calls may be retried.
      retrySafe: true,
    },
    (response) => {
      const now = ctx.now();
      const fields = readOAuthTokenFields(unwrapEnvelope(response, label), label, now);
      return {
        ...fields,
        ...(fields.refreshToken ? { refreshTokenExpiresAt: now + lifetime } : {}),
      };
    },
  );
}

const protocol: ClientCredentialsProtocol<QuidkeyConfig> = {
  kind: 'quidkey',
  variant: 'client-credentials',
  secretFields: ['client_id', 'client_secret'],
  mint: async (ctx) => {
    const secret = await ctx.secret();
    return call(
      ctx,
      '/api/v1/oauth2/token',
      {
        grant_type: 'client_credentials',
        client_id: secret.client_id!,
        client_secret: secret.client_secret!,
      },
      'quidkey token',
    );
  },
  // The guide says no new refresh token comes back (the reference shows one): accept both.
  // The call carries nothing but the refresh token, so a 401 refuses that (providers.md "401":
  // branch on the status). The core then mints afresh either way.
  refresh: (ctx, current) =>
    call(
      ctx,
      '/api/v1/oauth2/refresh',
      { refresh_token: current.refreshToken! },
      'quidkey refresh',
    ).catch((error: unknown) => {
      throw error instanceof ProviderRejectedError && error.status === 401
        ? asGrantRefused(error)
        : error;
    }),
};

export const quidkey: ProviderKind<QuidkeyConfig> = {
  kind: 'quidkey',
  configSchema,
  hosts: {
    production: 'https://core.quidkey.com',
    development: 'https://core-dev.quidkey.com',
  },
  protocol: () => protocol,
};
