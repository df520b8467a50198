import { Type } from '@sinclair/typebox';

/** Fields every provider entry may carry, whatever its kind. */
export const commonProviderFields = {
  baseUrl: Type.Optional(
    Type.String({
      format: 'uri',
      pattern: '^https?://',
      description: 'Overrides the environment host: any production, staging, sandbox or mock URL.',
    }),
  ),
  refreshLeadSeconds: Type.Optional(
    Type.Integer({
      minimum: 0,
      maximum: 86_400,
      description:
        'Renew this long before the access token expires (default: refresh.leadSeconds).',
    }),
  ),
  reauthLeadSeconds: Type.Optional(
    Type.Integer({
      minimum: 0,
      description:
        "For kinds without client credentials: turn a connection to needs_reauth this long before its refresh token ends (default: the kind's, e.g. 14 days for quicko; else 0).",
    }),
  ),
  timeoutMs: Type.Optional(
    Type.Integer({
      minimum: 100,
      maximum: 30_000,
      description: 'Timeout of each call to the provider (default 5000).',
    }),
  ),
};

/** Fields a provider entry may carry, as the core reads them. */
export interface CommonProviderConfig {
  kind: string;
  environment?: string;
  baseUrl?: string;
  refreshLeadSeconds?: number;
  reauthLeadSeconds?: number;
  timeoutMs?: number;
}
