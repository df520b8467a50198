import * as Type from '@sinclair/typebox';
import type { Static } from '@sinclair/typebox';

// The `token` function's request, the schema its check is generated from
// (shared/generated/request-checks.ts). The handler loads this module only to explain a refusal
// (shared/check-request.ts); the modules on its path import its types only, so neither TypeBox nor
// the schema is in the code the function starts with.

export const connectionIdPattern = '^[A-Za-z0-9._:@-]{1,128}$';

/** The `token` function's request. */
export const tokenRequestSchema = Type.Object(
  {
    provider: Type.String({ minLength: 1, maxLength: 63 }),
    connectionId: Type.Optional(Type.String({ pattern: connectionIdPattern })),
    minValiditySeconds: Type.Optional(Type.Integer({ minimum: 0, maximum: 86_400 })),
    forceRefresh: Type.Optional(Type.Boolean()),
    /**
     * OAuth 1.0a providers only, and required for them: the request to sign. The answer's
     * `authorization` is the signed header for exactly this method, URL and form body.
     */
    sign: Type.Optional(
      Type.Object(
        {
          method: Type.String({ pattern: '^[A-Za-z]{1,16}$' }),
          url: Type.String({ pattern: '^https?://', maxLength: 8192 }),
          /** An application/x-www-form-urlencoded body (signed); omit any other kind of body. */
          body: Type.Optional(Type.String({ maxLength: 262_144 })),
        },
        { additionalProperties: false },
      ),
    ),
  },
  { additionalProperties: false },
);
export type TokenRequest = Static<typeof tokenRequestSchema>;
/** The request an OAuth 1.0a caller wants signed. */
export type SignSpec = NonNullable<TokenRequest['sign']>;
