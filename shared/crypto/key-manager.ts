/** Encryption context: names what a ciphertext belongs to; must match exactly to decrypt. */
export type EncryptionContext = Readonly<Record<string, string>>;

export interface DataKey {
  /** 32 bytes for AES-256-GCM. Never logged, never stored. */
  plaintext: Buffer;
  /** The data key encrypted under the master key; stored beside the ciphertext. */
  wrapped: Buffer;
}

/**
 * The master-key port of envelope encryption: KMS in AWS, a local key offline. Both bind the
 * wrapped data key to the encryption context, so it only unwraps for the same context.
 */
export interface KeyManager {
  generateDataKey(context: EncryptionContext): Promise<DataKey>;
  decryptDataKey(wrapped: Buffer, context: EncryptionContext): Promise<Buffer>;
}

/** A stable text form of a context: keys sorted, so equal contexts give equal strings. */
export function canonicalContext(context: EncryptionContext): string {
  return JSON.stringify(
    Object.keys(context)
      .sort()
      .map((key) => [key, context[key]]),
  );
}
