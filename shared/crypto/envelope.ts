import {
  createCipheriv,
  createDecipheriv,
  createSecretKey,
  randomBytes,
  type KeyObject,
} from 'node:crypto';
import { LRUCache } from 'lru-cache';
import { canonicalContext, type EncryptionContext, type KeyManager } from './key-manager.ts';

/**
 * Ciphertext format prefix; bump when the layout changes.
 * - v2 (written): the data key is bound to the context's `keyFields` only; the whole context is
 *   bound by GCM additional data.
 * - v1 (read only): the data key was bound to the whole context.
 */
const FORMAT = 'v2';
const LEGACY_FORMAT = 'v1';

/**
 * The context fields the data key (and so KMS) is bound to: what a key policy can condition on
 * (`kms:EncryptionContext:purpose`) and what a cached data key may be shared across. One data key
 * then serves a provider's many connections (up to its use count and age) instead of one KMS call
 * per connection per write: 10,000 renewals cost a handful of GenerateDataKey calls, not 10,000.
 * The rest of the context (the connection id) is bound by the AEAD: a ciphertext copied onto
 * another item fails GCM authentication.
 */
export const keyFields = ['purpose', 'provider'] as const;

function keyContextOf(context: EncryptionContext): EncryptionContext {
  return Object.fromEntries(
    keyFields.filter((field) => field in context).map((field) => [field, context[field]!]),
  );
}

export interface EnvelopeOptions {
  /** How long a plaintext data key may be reused (ms). */
  maxKeyAgeMs: number;
  /** How many encryptions one cached data key may serve (decryptions are bounded by age only). */
  maxKeyUses: number;
  /** How many data keys stay cached at once. */
  maxCachedKeys: number;
  /** How many decrypted payloads stay cached at once (for `maxKeyAgeMs`, as their data keys). */
  maxCachedPlaintexts: number;
}

export const defaultEnvelopeOptions: EnvelopeOptions = {
  maxKeyAgeMs: 5 * 60_000,
  maxKeyUses: 1_000,
  maxCachedKeys: 1_000,
  maxCachedPlaintexts: 1_000,
};

interface CachedKey {
  /** The plaintext data key as a KeyObject, made once: a Buffer key is re-imported per cipher. */
  secret: KeyObject;
  wrapped: Buffer;
  uses: number;
}

/**
 * Envelope encryption with AES-256-GCM. The text form is
 * `v2.<wrapped data key>.<iv>.<ciphertext+tag>` (base64url parts). The encryption context is
 * bound twice: its `keyFields` by the key manager to the wrapped data key, and all of it as GCM
 * additional data to the payload, so a ciphertext copied under another context fails to decrypt.
 *
 * Plaintext data keys are cached per context (for encryption, with a bounded age and use count)
 * and per wrapped key (for decryption, with a bounded age), so a warm container does not call the
 * key manager on every read or write. The use count bounds how much one key encrypts (random-IV
 * GCM limits); decrypting adds nothing to that, so, as in the AWS Encryption SDK's caching CMM,
 * only age bounds a decryption key: a warm read unwraps once per data key, not once per 1,000.
 * Evicted keys are not zeroed: an await may sit between a cache hit and the key's use, and a key
 * zeroed in that gap would corrupt a concurrent operation.
 *
 * A ciphertext decrypted once is remembered (by its exact text and context, for at most
 * `maxKeyAgeMs`, as long as a data key may stay cached): a warm container reading an unchanged
 * item again, the token path's common case, skips the AES work. Holding the plaintext is no wider
 * than holding the data key that opens it; a changed, tampered or moved ciphertext is another
 * text, so it is decrypted and checked in full.
 */
export class Envelope {
  private readonly options: EnvelopeOptions;
  private readonly encryptKeys: LRUCache<string, CachedKey>;
  private readonly decryptKeys: LRUCache<string, CachedKey, EncryptionContext>;
  private readonly plaintexts: LRUCache<string, { context: EncryptionContext; plaintext: string }>;

  constructor(
    private readonly keys: KeyManager,
    options: Partial<EnvelopeOptions> = {},
  ) {
    this.options = { ...defaultEnvelopeOptions, ...options };
    const common = { max: this.options.maxCachedKeys, ttl: this.options.maxKeyAgeMs };
    this.encryptKeys = new LRUCache(common);
    this.plaintexts = new LRUCache({
      max: this.options.maxCachedPlaintexts,
      ttl: this.options.maxKeyAgeMs,
    });
    this.decryptKeys = new LRUCache({
      ...common,
      fetchMethod: async (cacheKey, _stale, { context }) => {
        const wrapped = Buffer.from(cacheKey.slice(0, cacheKey.indexOf('|')), 'base64url');
        const plaintext = await this.keys.decryptDataKey(wrapped, context);
        return { secret: createSecretKey(plaintext), wrapped, uses: 0 };
      },
    });
  }

  async encrypt(plaintext: string, context: EncryptionContext): Promise<string> {
    const canonical = canonicalContext(context);
    const keyContext = keyContextOf(context);
    const keyCanonical = canonicalContext(keyContext);
    let key = this.encryptKeys.get(keyCanonical);
    if (!key || key.uses >= this.options.maxKeyUses) {
      const fresh = await this.keys.generateDataKey(keyContext);
      const secret = createSecretKey(fresh.plaintext);
      key = { secret, wrapped: fresh.wrapped, uses: 0 };
      this.encryptKeys.set(keyCanonical, key);
      // Whoever reads this item next in this container needs the same key: seed the decrypt cache.
      this.decryptKeys.set(decryptCacheKey(fresh.wrapped, keyCanonical), {
        secret,
        wrapped: fresh.wrapped,
        uses: 0,
      });
    }
    key.uses += 1;
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', key.secret, iv);
    cipher.setAAD(Buffer.from(`${FORMAT}.${canonical}`));
    const body = Buffer.concat([
      cipher.update(plaintext, 'utf8'),
      cipher.final(),
      cipher.getAuthTag(),
    ]);
    return [
      FORMAT,
      key.wrapped.toString('base64url'),
      iv.toString('base64url'),
      body.toString('base64url'),
    ].join('.');
  }

  /** Throws on any tampering, a wrong context, or a ciphertext that is not ours. */
  async decrypt(ciphertext: string, context: EncryptionContext): Promise<string> {
    const parts = ciphertext.split('.');
    const format = parts[0];
    if (parts.length !== 4 || (format !== FORMAT && format !== LEGACY_FORMAT)) {
      throw new Error('Unknown ciphertext format');
    }
    const [, wrappedText, ivText, bodyText] = parts as [string, string, string, string];
    const remembered = this.plaintexts.get(ciphertext);
    if (remembered && sameContext(remembered.context, context)) return remembered.plaintext;
    const canonical = canonicalContext(context);
    const keyContext = format === FORMAT ? keyContextOf(context) : context;
    const cacheKey = decryptCacheKey(
      Buffer.from(wrappedText, 'base64url'),
      canonicalContext(keyContext),
    );
    const key = await this.decryptKeys.fetch(cacheKey, { context: keyContext });
    if (!key) throw new Error('The data key could not be unwrapped');
    const body = Buffer.from(bodyText, 'base64url');
    if (body.length < 16) throw new Error('Ciphertext too short');
    const decipher = createDecipheriv('aes-256-gcm', key.secret, Buffer.from(ivText, 'base64url'));
    decipher.setAAD(Buffer.from(`${format}.${canonical}`));
    decipher.setAuthTag(body.subarray(body.length - 16));
    const plaintext = Buffer.concat([
      decipher.update(body.subarray(0, body.length - 16)),
      decipher.final(),
    ]).toString('utf8');
    this.plaintexts.set(ciphertext, { context: { ...context }, plaintext });
    return plaintext;
  }
}

/** The same fields with the same values (what canonicalContext would say, without building it). */
function sameContext(a: EncryptionContext, b: EncryptionContext): boolean {
  const keys = Object.keys(a);
  return keys.length === Object.keys(b).length && keys.every((key) => a[key] === b[key]);
}

function decryptCacheKey(wrapped: Buffer, canonical: string): string {
  return `${wrapped.toString('base64url')}|${canonical}`;
}
