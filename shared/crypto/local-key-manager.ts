import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import {
  canonicalContext,
  type DataKey,
  type EncryptionContext,
  type KeyManager,
} from './key-manager.ts';

const WRAP_VERSION = 1;

/**
 * Offline stand-in for KMS: a 256-bit master key on disk wraps data keys with AES-256-GCM, the
 * encryption context as additional authenticated data (as KMS binds it). Wrapped key layout:
 * version(1) | key id(4, from the master key's hash) | iv(12) | wrapped key(32) | tag(16).
 */
export class LocalKeyManager implements KeyManager {
  private readonly keyId: Buffer;

  constructor(private readonly masterKey: Buffer) {
    if (masterKey.length !== 32) throw new Error('The local master key must be 32 bytes');
    this.keyId = createHash('sha256').update(masterKey).digest().subarray(0, 4);
  }

  /**
   * The key from `BROKER_LOCAL_KEY` (base64), else from the file, created on first use with
   * `wx` so two processes starting together cannot each write a different key.
   */
  static fromEnvironmentOrFile(env: NodeJS.ProcessEnv, path: string): LocalKeyManager {
    if (env.BROKER_LOCAL_KEY)
      return new LocalKeyManager(Buffer.from(env.BROKER_LOCAL_KEY, 'base64'));
    try {
      mkdirSync(dirname(path), { recursive: true });
      writeFileSync(path, randomBytes(32).toString('base64') + '\n', { flag: 'wx', mode: 0o600 });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
    return new LocalKeyManager(Buffer.from(readFileSync(path, 'utf8').trim(), 'base64'));
  }

  async generateDataKey(context: EncryptionContext): Promise<DataKey> {
    const plaintext = randomBytes(32);
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', this.masterKey, iv);
    cipher.setAAD(Buffer.from(canonicalContext(context)));
    const wrappedKey = Buffer.concat([cipher.update(plaintext), cipher.final()]);
    const wrapped = Buffer.concat([
      Buffer.of(WRAP_VERSION),
      this.keyId,
      iv,
      wrappedKey,
      cipher.getAuthTag(),
    ]);
    return { plaintext, wrapped };
  }

  async decryptDataKey(wrapped: Buffer, context: EncryptionContext): Promise<Buffer> {
    if (wrapped.length !== 1 + 4 + 12 + 32 + 16 || wrapped[0] !== WRAP_VERSION) {
      throw new Error('Not a data key wrapped by the local key manager');
    }
    if (!wrapped.subarray(1, 5).equals(this.keyId)) {
      throw new Error('The data key was wrapped under another local master key');
    }
    const decipher = createDecipheriv('aes-256-gcm', this.masterKey, wrapped.subarray(5, 17));
    decipher.setAAD(Buffer.from(canonicalContext(context)));
    decipher.setAuthTag(wrapped.subarray(49));
    return Buffer.concat([decipher.update(wrapped.subarray(17, 49)), decipher.final()]);
  }
}
