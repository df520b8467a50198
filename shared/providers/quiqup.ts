import { Type, type Static } from '@sinclair/typebox';
import { commonProviderFields } from './common.ts';
import { parseJson, readOAuthTokenFields } from './http.ts';
import type {
  ClientCredentialsProtocol,
  ProviderContext,
  ProviderKind,
  TokenSet,
} from './types.ts';

/** Quiqup: OAuth 2.0 client credentials (../shared/seeds/001, providers.md "Quiqup"). */
const configSchema = Type.Object(
  {
    kind: Type.Literal('quiqup'),
    environment: Type.Union(
      [
        Type.Literal('production'),
        Type.Literal('staging'),
        Type.Literal('mock'),
        Type.Literal('sandbox'),
      ],
      { description: 'production: 7-day tokens; staging: 1-hour tokens; sandbox: npm start.' },
    ),
    tokenRequestEncoding: Type.Optional(
      Type.Union([Type.Literal('json'), Type.Literal('form')], {
        description: 'How POST /oauth/token is encoded; the docs show JSON and list form too.',
      }),
    ),
    ...commonProviderFields,
  },
  { additionalProperties: false },
);
export type QuiqupConfig = Static<typeof configSchema>;

async function tokenRequest(
  ctx: ProviderContext<QuiqupConfig>,
  fields: Record<string, string>,
  label: string,
  retrySafe: boolean,
): Promise<TokenSet> {
  const secret = await ctx.secret();
  const params = { client_id: secret.client_id!, client_secret: secret.client_secret!, ...fields };
  const form = ctx.config.tokenRequestEncoding === 'form';
  return ctx.http(
    {
      label,
      method: 'POST',
      url: `${ctx.baseUrl}/oauth/token`,
      headers: {
        'content-type': form ? 'application/x-www-form-urlencoded' : 'application/json',
        accept: 'application/json',
      },
      body: form ? new URLSearchParams(params).toString() : JSON.stringify(params),
      retrySafe,
    },
    (response) => readOAuthTokenFields(parseJson(response, label), label, ctx.now()),
  );
}

const protocol: ClientCredentialsProtocol<QuiqupConfig> = {
  kind: 'quiqup',
  variant: 'client-credentials',
  secretFields: ['client_id', 'client_secret'],
  // Minting again is the documented way to renew; repeating it is harmless.
  mint: (ctx) => tokenRequest(ctx, { grant_type: 'client_credentials' }, 'quiqup token', true),
  // The schema lists grant_type=refresh_token; used only if an answer ever carried a refresh token.
  // Not retried: a provider that rotates refresh tokens may have consumed it already.
  refresh: (ctx, current) =>
    tokenRequest(
      ctx,
      { grant_type: 'refresh_token', refresh_token: current.refreshToken! },
      'quiqup refresh',
      false,
    ),
};

export const quiqup: ProviderKind<QuiqupConfig> = {
  kind: 'quiqup',
  configSchema,
  hosts: {
    production: 'https://platform-api.quiqup.com',
    staging: 'https://platform-api.staging.quiqup.com',
    mock: 'https://developer-docs.quiqup.com/_mock/auth',
  },
  protocol: () => protocol,
};
