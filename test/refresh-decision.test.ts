import { describe, expect, it } from 'vitest';
import { InvalidRequestError } from '../shared/errors.ts';
import { decideRenewal } from '../shared/refresh.ts';
import { tokenRequestSchema } from '../shared/token-request.ts';
import { validateRequest } from '../shared/validate.ts';

describe('decideRenewal', () => {
  const now = 1_000_000;
  const token = (expiresAt?: number) => ({
    accessToken: 'a',
    tokenType: 'Bearer',
    ...(expiresAt ? { expiresAt } : {}),
  });
  it.each([
    [token(now + 120_000), 60_000, false, { renew: false, reason: 'valid' }],
    [token(now + 59_000), 60_000, false, { renew: true, reason: 'expires_within_min_validity' }],
    [token(now), 0, false, { renew: true, reason: 'expired' }],
    [token(now + 120_000), 60_000, true, { renew: true, reason: 'forced' }],
    [token(undefined), 60_000, false, { renew: false, reason: 'does_not_expire' }],
  ])('%j with %d ms required, force=%s → %j', (tokens, minValidityMs, force, decision) => {
    expect(decideRenewal(tokens, now, minValidityMs, force)).toEqual(decision);
  });
});

describe('validateRequest', () => {
  it('names the field and never echoes the value', () => {
    const secretish = 'eyJhbGciOiJIUzI1NiJ9.secret-looking-value';
    for (const payload of [
      { provider: 'quidkey', connectionId: `${secretish}#` },
      { provider: 'quidkey', accessToken: secretish },
      { provider: secretish.repeat(3) },
    ]) {
      const error = (() => {
        try {
          validateRequest(tokenRequestSchema, payload);
        } catch (e) {
          return e as InvalidRequestError;
        }
        throw new Error('accepted');
      })();
      expect(error).toBeInstanceOf(InvalidRequestError);
      expect(error.message).toMatch(/^Invalid request: (connectionId|accessToken|provider): /);
      expect(error.message).not.toContain('secret-looking-value');
    }
  });
});
