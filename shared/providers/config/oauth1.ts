import * as Type from '@sinclair/typebox';
import type { Static } from '@sinclair/typebox';
import type { KindConfig } from '../types.ts';
import { commonProviderFields, urlTemplate } from './common.ts';

/** The oauth1 entry's schema (the protocol is ../oauth1.ts): RFC 5849's three endpoints. */
export const oauth1Fields = {
  requestTokenUrl: urlTemplate(
    'Temporary credential request endpoint (RFC 5849 §2.1), e.g. {baseUrl}/oauth/request_token.',
  ),
  authorizeUrl: Type.String({
    pattern: '\\{oauth_token\\}',
    maxLength: 2048,
    description:
      'Where the browser goes to authorize (§2.2): a URL template with {oauth_token} (the request token) and optionally {baseUrl}; a fragment is allowed, for single-page apps.',
  }),
  accessTokenUrl: urlTemplate('Token credentials request endpoint (RFC 5849 §2.3).'),
  signatureMethod: Type.Optional(
    Type.Union([Type.Literal('HMAC-SHA1'), Type.Literal('HMAC-SHA256')], {
      description: 'How requests are signed: HMAC-SHA1 (default, §3.4.2) or HMAC-SHA256.',
    }),
  ),
  includeVersion: Type.Optional(
    Type.Boolean({
      description:
        'Send oauth_version="1.0" (optional in §3.1; default true), for servers that want it or refuse it.',
    }),
  ),
};

const configSchema = Type.Object(
  { kind: Type.Literal('oauth1'), ...oauth1Fields, ...commonProviderFields },
  { additionalProperties: false },
);
export type OAuth1Config = Static<typeof configSchema>;

/** How parseConfig checks an oauth1 entry. */
export const oauth1Config: KindConfig<OAuth1Config> = { configSchema };
