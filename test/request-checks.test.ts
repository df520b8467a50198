import { readFileSync } from 'node:fs';
import { describe, expect, it, vi } from 'vitest';
import { Check } from '@sinclair/typebox/value';
import { checkRequest } from '../shared/check-request.ts';
import { InvalidRequestError } from '../shared/errors.ts';
import { checkTokenRequest } from '../shared/generated/request-checks.ts';
import { tokenRequestSchema } from '../shared/token-request.ts';
import { validateRequest } from '../shared/validate.ts';
import { requestChecksFile, requestChecksSource } from '../scripts/write-validators.ts';

// The token handler validates with a check compiled ahead of time from the TypeBox schema. The
// schema stays the single source: these tests fail when the generated file no longer matches it,
// or when the compiled check and TypeBox's own reading of the schema disagree.

const payloads: unknown[] = [
  { provider: 'quidkey' },
  { provider: 'quidkey', connectionId: 'user-42', minValiditySeconds: 0, forceRefresh: true },
  { provider: 'quipt', sign: { method: 'POST', url: 'https://api.example/v2', body: 'a=1' } },
  {},
  { provider: '' },
  { provider: 'x'.repeat(64) },
  { provider: 'quidkey', connectionId: 'has space' },
  { provider: 'quidkey', minValiditySeconds: 1.5 },
  { provider: 'quidkey', minValiditySeconds: 86_401 },
  { provider: 'quidkey', forceRefresh: 'yes' },
  { provider: 'quidkey', extra: 1 },
  { provider: 'quipt', sign: { method: 'GET' } },
  { provider: 'quipt', sign: { method: 'GET', url: 'ftp://x' } },
  { provider: 'quipt', sign: { method: 'GET', url: 'https://x', headers: {} } },
  { provider: 'quipt', sign: null },
  [],
  null,
  'quidkey',
];

describe('request checks compiled ahead of time', () => {
  it('the generated file is current (run `npm run schema`)', async () => {
    expect(readFileSync(requestChecksFile, 'utf8')).toBe(await requestChecksSource());
  });

  it.each(payloads.map((payload) => [JSON.stringify(payload), payload]))(
    'the compiled token-request check agrees with the schema: %s',
    (_name, payload) => {
      expect(checkTokenRequest(payload)).toBe(Check(tokenRequestSchema, payload));
    },
  );

  it('a refusal still names the field, never its value', () => {
    const refuse = (payload: unknown) => {
      try {
        validateRequest(tokenRequestSchema, payload, checkTokenRequest);
      } catch (error) {
        expect(error).toBeInstanceOf(InvalidRequestError);
        return (error as Error).message;
      }
      return expect.fail('accepted');
    };
    expect(refuse({ provider: 'quidkey', connectionId: 'secret value' })).toMatch(
      /^Invalid request: connectionId: /,
    );
    expect(refuse({ provider: 'quidkey', connectionId: 'secret value' })).not.toContain('secret');
    expect(refuse({ provider: 'quipt', sign: { method: 'GET' } })).toMatch(
      /^Invalid request: sign/,
    );
    expect(validateRequest(tokenRequestSchema, { provider: 'q' }, checkTokenRequest)).toEqual({
      provider: 'q',
    });
  });
});

describe('checkRequest: the schema loaded only to explain a refusal', () => {
  const accepted = payloads.filter((payload) => checkTokenRequest(payload));
  const refused = payloads.filter((payload) => !checkTokenRequest(payload));

  it.each(accepted.map((payload) => [JSON.stringify(payload), payload]))(
    'accepts %s without loading the schema',
    async (_name, payload) => {
      const loadSchema = vi.fn(async () => tokenRequestSchema);
      await expect(checkRequest(payload, checkTokenRequest, loadSchema)).resolves.toBe(payload);
      expect(loadSchema).not.toHaveBeenCalled();
    },
  );

  it.each(refused.map((payload) => [JSON.stringify(payload), payload]))(
    'refuses %s with the message validateRequest gives',
    async (_name, payload) => {
      const expected = (() => {
        try {
          validateRequest(tokenRequestSchema, payload, checkTokenRequest);
        } catch (error) {
          return error as InvalidRequestError;
        }
        return expect.fail('accepted');
      })();
      const loadSchema = vi.fn(async () => tokenRequestSchema);
      const error = await checkRequest(payload, checkTokenRequest, loadSchema).catch(
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(InvalidRequestError);
      expect((error as Error).message).toBe(expected.message);
      expect(loadSchema).toHaveBeenCalledOnce();
    },
  );
});
