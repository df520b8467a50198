import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as Type from '@sinclair/typebox';
import { commonProviderFields } from '../../shared/providers/config/common.ts';
import { parseConfig } from '../../shared/config.ts';
import { protocolOf } from '../../shared/providers/protocols.ts';
import {
  defaultKinds,
  type AnyProviderKind,
  type KindRegistry,
} from '../../shared/providers/registry.ts';
import type { TokenSet } from '../../shared/providers/types.ts';
import type { TestBroker } from './local.ts';

/**
 * A user-consent provider kind for tests only. The failure policy treats user-consent kinds
 * differently (a refusal of the grant means needs_reauth; a consent running out is flagged ahead
 * of time), and this lets the refresher tests prove that over real HTTP without depending on a
 * real consent kind's flow. It cannot mint, as no consent kind can; it renews through the refresh
 * hook of the sandbox it names (`via`), so that sandbox's faults and refusals apply to it, marked
 * as that kind marks them: Quidkey's refusal of a used or revoked refresh token (HTTP 401) is
 * `grantRefused`, any other refusal is not.
 */
export const testConsentKind: AnyProviderKind = {
  kind: 'test-consent',
  configSchema: Type.Object(
    {
      ...commonProviderFields,
      kind: Type.Literal('test-consent'),
      environment: Type.Literal('sandbox'),
      via: Type.Union([Type.Literal('quidkey'), Type.Literal('quiqup')]),
    },
    { additionalProperties: false },
  ),
  protocol: (config: { via: 'quidkey' | 'quiqup' }) => {
    // The catalog entry it renews through, as a provider of it would be configured.
    const entry = parseConfig({
      providers: { via: { catalog: config.via, environment: 'sandbox' } },
    }).providers.via!;
    const via = protocolOf(entry);
    return {
      kind: 'test-consent',
      variant: 'user-consent',
      secretFields: ['client_id', 'client_secret'],
      startConsent: () => Promise.reject(new Error('test-consent has no consent page')),
      checkCallback: () => ({ ok: false, message: 'test-consent has no consent page' }),
      completeConsent: () => Promise.reject(new Error('test-consent has no consent page')),
      refresh: (ctx, current) => {
        if (!via.refresh) throw new Error(`${config.via} cannot refresh`);
        const sandboxRoot = ctx.baseUrl.slice(0, ctx.baseUrl.lastIndexOf('/'));
        return via.refresh(
          { ...ctx, config: entry as never, baseUrl: `${sandboxRoot}/${config.via}` },
          current,
        );
      },
    };
  },
};

/** The shipped kinds plus the test kind, for the tests' own brokers and configs. */
export const testKinds: KindRegistry = { ...defaultKinds, 'test-consent': testConsentKind };

/**
 * Fresh tokens as a person's consent would leave them: an access and a refresh token from the
 * Quidkey sandbox (its refresh endpoint honours them), with the broker's expiry bookkeeping.
 */
export async function consentTokens(local: TestBroker): Promise<TokenSet> {
  const secrets = JSON.parse(readFileSync(join(local.dataDir, 'secrets.json'), 'utf8')) as Record<
    string,
    Record<string, string>
  >;
  const response = await fetch(`${local.url}/sandbox/quidkey/api/v1/oauth2/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ grant_type: 'client_credentials', ...secrets.quidkey }),
  });
  const { data } = (await response.json()) as {
    data: { access_token: string; refresh_token: string; expires_in: number };
  };
  const now = local.clock.t;
  return {
    accessToken: data.access_token,
    tokenType: 'Bearer',
    expiresAt: now + data.expires_in * 1000,
    refreshToken: data.refresh_token,
    refreshTokenExpiresAt: now + local.sandboxes.quidkey.refreshTokenSeconds * 1000,
  };
}
