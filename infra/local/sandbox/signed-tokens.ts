import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

export interface SandboxTokenClaims {
  /** What the token is for: "access" or "refresh". */
  typ: string;
  /** The client it was issued to. */
  cid: string;
  /** Expiry, epoch ms. */
  exp: number;
  /** Unique id, so two tokens issued in the same millisecond differ. */
  jti: string;
}

/**
 * Self-verifying sandbox tokens (payload + HMAC), so the sandbox needs no token database and a
 * restart of `npm start` does not invalidate what the broker holds.
 */
export class SandboxTokens {
  constructor(
    private readonly key: Buffer,
    private readonly prefix: string,
  ) {}

  issue(typ: string, clientId: string, expiresAt: number): string {
    const claims: SandboxTokenClaims = {
      typ,
      cid: clientId,
      exp: expiresAt,
      jti: randomBytes(8).toString('hex'),
    };
    const payload = Buffer.from(JSON.stringify(claims)).toString('base64url');
    return `${this.prefix}.${payload}.${this.sign(payload)}`;
  }

  /** The claims of a genuine, unexpired token of the given type; undefined otherwise. */
  verify(token: string | undefined, typ: string, now: number): SandboxTokenClaims | undefined {
    const [prefix, payload, signature] = (token ?? '').split('.');
    if (prefix !== this.prefix || !payload || !signature) return undefined;
    const expected = Buffer.from(this.sign(payload));
    const given = Buffer.from(signature);
    if (expected.length !== given.length || !timingSafeEqual(expected, given)) return undefined;
    const claims = JSON.parse(
      Buffer.from(payload, 'base64url').toString('utf8'),
    ) as SandboxTokenClaims;
    return claims.typ === typ && claims.exp > now ? claims : undefined;
  }

  private sign(payload: string): string {
    return createHmac('sha256', this.key).update(`${this.prefix}.${payload}`).digest('base64url');
  }
}
