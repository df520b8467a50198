import { createCipheriv, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { Envelope } from '../shared/crypto/envelope.ts';
import {
  canonicalContext,
  type DataKey,
  type EncryptionContext,
  type KeyManager,
} from '../shared/crypto/key-manager.ts';
import { LocalKeyManager } from '../shared/crypto/local-key-manager.ts';

/** The real local key manager, with its calls counted. */
class CountingKeyManager implements KeyManager {
  generated = 0;
  decrypted = 0;
  constructor(private readonly inner: KeyManager) {}
  generateDataKey(context: EncryptionContext): Promise<DataKey> {
    this.generated += 1;
    return this.inner.generateDataKey(context);
  }
  decryptDataKey(wrapped: Buffer, context: EncryptionContext): Promise<Buffer> {
    this.decrypted += 1;
    return this.inner.decryptDataKey(wrapped, context);
  }
}

const contextA = { purpose: 'connection-tokens', provider: 'quidkey', connectionId: 'a' };
const contextB = { purpose: 'connection-tokens', provider: 'quidkey', connectionId: 'b' };
const masterKey = randomBytes(32);

describe('envelope encryption (AES-256-GCM, data keys from the key manager)', () => {
  it('round-trips and never leaves the plaintext in the ciphertext', async () => {
    const envelope = new Envelope(new LocalKeyManager(masterKey));
    const secret = JSON.stringify({ accessToken: 'at-123456789', refreshToken: 'rt-987654321' });
    const ciphertext = await envelope.encrypt(secret, contextA);
    expect(ciphertext).toMatch(/^v2\.[\w-]+\.[\w-]+\.[\w-]+$/);
    expect(ciphertext).not.toContain('at-123456789');
    expect(await envelope.decrypt(ciphertext, contextA)).toBe(secret);
    // A fresh container (no cache) with the same master key decrypts too.
    expect(await new Envelope(new LocalKeyManager(masterKey)).decrypt(ciphertext, contextA)).toBe(
      secret,
    );
  });

  it('refuses a ciphertext under another context (copied onto another item)', async () => {
    const envelope = new Envelope(new LocalKeyManager(masterKey));
    const ciphertext = await envelope.encrypt('tokens', contextA);
    await expect(envelope.decrypt(ciphertext, contextB)).rejects.toThrow();
    await expect(
      new Envelope(new LocalKeyManager(masterKey)).decrypt(ciphertext, contextB),
    ).rejects.toThrow();
    await expect(
      envelope.decrypt(ciphertext, { ...contextA, provider: 'quiqup' }),
    ).rejects.toThrow();
  });

  it("one data key serves a provider's many connections; another provider gets its own", async () => {
    const keys = new CountingKeyManager(new LocalKeyManager(masterKey));
    const envelope = new Envelope(keys);
    const a = await envelope.encrypt('tokens a', contextA);
    const b = await envelope.encrypt('tokens b', contextB);
    expect(keys.generated).toBe(1);
    await envelope.encrypt('tokens q', { ...contextA, provider: 'quiqup' });
    expect(keys.generated).toBe(2);
    // A reader unwraps the shared key once for both connections; each stays bound to its own.
    const reader = new CountingKeyManager(new LocalKeyManager(masterKey));
    const readerEnvelope = new Envelope(reader);
    expect(await readerEnvelope.decrypt(a, contextA)).toBe('tokens a');
    expect(await readerEnvelope.decrypt(b, contextB)).toBe('tokens b');
    expect(reader.decrypted).toBe(1);
    await expect(readerEnvelope.decrypt(a, contextB)).rejects.toThrow();
  });

  it('still reads v1 ciphertexts (data key bound to the whole context)', async () => {
    const keys = new LocalKeyManager(masterKey);
    const dataKey = await keys.generateDataKey(contextA);
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', dataKey.plaintext, iv);
    cipher.setAAD(Buffer.from(`v1.${canonicalContext(contextA)}`));
    const body = Buffer.concat([
      cipher.update('legacy', 'utf8'),
      cipher.final(),
      cipher.getAuthTag(),
    ]);
    const v1 = ['v1', dataKey.wrapped, iv, body]
      .map((p) => (typeof p === 'string' ? p : p.toString('base64url')))
      .join('.');
    const envelope = new Envelope(new LocalKeyManager(masterKey));
    expect(await envelope.decrypt(v1, contextA)).toBe('legacy');
    await expect(envelope.decrypt(v1, contextB)).rejects.toThrow();
  });

  it('refuses any tampered part', async () => {
    const envelope = new Envelope(new LocalKeyManager(masterKey));
    const ciphertext = await envelope.encrypt('tokens', contextA);
    const parts = ciphertext.split('.');
    for (const index of [1, 2, 3]) {
      const bytes = Buffer.from(parts[index]!, 'base64url');
      bytes[bytes.length - 1]! ^= 0x01;
      const tampered = parts
        .map((part, i) => (i === index ? bytes.toString('base64url') : part))
        .join('.');
      await expect(
        new Envelope(new LocalKeyManager(masterKey)).decrypt(tampered, contextA),
      ).rejects.toThrow();
    }
    await expect(envelope.decrypt(`v9.${parts.slice(1).join('.')}`, contextA)).rejects.toThrow(
      'format',
    );
  });

  it('remembers a decrypted text only for that exact text and context', async () => {
    // The same envelope, so the plaintext of the untouched ciphertext is remembered meanwhile.
    const envelope = new Envelope(new LocalKeyManager(masterKey));
    const ciphertext = await envelope.encrypt('tokens', contextA);
    expect(await envelope.decrypt(ciphertext, contextA)).toBe('tokens');
    expect(await envelope.decrypt(ciphertext, contextA)).toBe('tokens');
    await expect(envelope.decrypt(ciphertext, contextB)).rejects.toThrow();
    const parts = ciphertext.split('.');
    const body = Buffer.from(parts[3]!, 'base64url');
    body[0]! ^= 0x01;
    const tampered = [...parts.slice(0, 3), body.toString('base64url')].join('.');
    await expect(envelope.decrypt(tampered, contextA)).rejects.toThrow();
    expect(await envelope.decrypt(ciphertext, contextA)).toBe('tokens');
  });

  it('refuses a ciphertext under another master key', async () => {
    const ciphertext = await new Envelope(new LocalKeyManager(masterKey)).encrypt(
      'tokens',
      contextA,
    );
    await expect(
      new Envelope(new LocalKeyManager(randomBytes(32))).decrypt(ciphertext, contextA),
    ).rejects.toThrow('another local master key');
  });

  it('caches data keys: one key-manager call per context, not per read or write', async () => {
    const keys = new CountingKeyManager(new LocalKeyManager(masterKey));
    const envelope = new Envelope(keys);
    const ciphertexts = [];
    for (let i = 0; i < 50; i += 1)
      ciphertexts.push(await envelope.encrypt(`tokens ${i}`, contextA));
    for (const ciphertext of ciphertexts) await envelope.decrypt(ciphertext, contextA);
    expect(keys.generated).toBe(1);
    expect(keys.decrypted).toBe(0); // the writer seeded its own decrypt cache

    const reader = new CountingKeyManager(new LocalKeyManager(masterKey));
    const readerEnvelope = new Envelope(reader);
    await Promise.all(ciphertexts.map((c) => readerEnvelope.decrypt(c, contextA)));
    expect(reader.decrypted).toBe(1); // concurrent reads of one data key share one unwrap
  });

  it('bounds the use count and the age of a cached data key', async () => {
    const keys = new CountingKeyManager(new LocalKeyManager(masterKey));
    const envelope = new Envelope(keys, { maxKeyUses: 3 });
    for (let i = 0; i < 7; i += 1) await envelope.encrypt('x', contextA);
    expect(keys.generated).toBe(3); // uses 1-3, 4-6, 7

    const aged = new CountingKeyManager(new LocalKeyManager(masterKey));
    const shortLived = new Envelope(aged, { maxKeyAgeMs: 20 });
    await shortLived.encrypt('x', contextA);
    await new Promise((done) => setTimeout(done, 40));
    await shortLived.encrypt('x', contextA);
    expect(aged.generated).toBe(2);
  });

  it('bounds a cached decryption key by age only: a warm reader unwraps once, not once per N uses', async () => {
    const ciphertext = await new Envelope(new LocalKeyManager(masterKey)).encrypt('x', contextA);
    const reader = new CountingKeyManager(new LocalKeyManager(masterKey));
    const envelope = new Envelope(reader, { maxKeyUses: 3 });
    for (let i = 0; i < 10; i += 1) await envelope.decrypt(ciphertext, contextA);
    expect(reader.decrypted).toBe(1);

    const aged = new CountingKeyManager(new LocalKeyManager(masterKey));
    const shortLived = new Envelope(aged, { maxKeyAgeMs: 20 });
    await shortLived.decrypt(ciphertext, contextA);
    await new Promise((done) => setTimeout(done, 40));
    await shortLived.decrypt(ciphertext, contextA);
    expect(aged.decrypted).toBe(2);
  });
});
