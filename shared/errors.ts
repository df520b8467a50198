/**
 * One error base with a stable `code`, a `message` safe to show a caller, and a `cause` for the
 * logs. Messages never carry a token, secret, code or verifier: build them from ids only.
 */
export type BrokerErrorCode =
  | 'invalid_request'
  | 'unknown_provider'
  | 'not_found'
  | 'needs_reauth'
  | 'provider_rejected'
  | 'provider_unavailable'
  | 'provider_misconfigured'
  | 'access_denied'
  | 'internal_error';

export class BrokerError extends Error {
  readonly code: BrokerErrorCode;
  constructor(code: BrokerErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

export class InvalidRequestError extends BrokerError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('invalid_request', message, options);
  }
}

export class UnknownProviderError extends BrokerError {
  constructor(providerId: string) {
    super('unknown_provider', `No provider named "${providerId}" is configured.`);
  }
}

export class NotFoundError extends BrokerError {
  constructor(message: string) {
    super('not_found', message);
  }
}

export class NeedsReauthError extends BrokerError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('needs_reauth', message, options);
  }
}

/** The provider refused the credentials or the grant: retrying the same request will not help. */
export class ProviderRejectedError extends BrokerError {
  /** The OAuth `error` value or the provider's own error code, when it sent one. */
  readonly providerCode: string | undefined;
  readonly status: number | undefined;
  /**
   * The provider refused this connection's grant — refresh token invalid, expired or revoked;
   * reconnecting is the fix. Set only by a kind that can tell (OAuth `invalid_grant` on a
   * refresh); any other refusal (our client credentials, a quota, a wrong URL) leaves it unset.
   */
  readonly grantRefused: boolean | undefined;
  constructor(
    message: string,
    details: {
      providerCode?: string;
      status?: number;
      grantRefused?: boolean;
      cause?: unknown;
    } = {},
  ) {
    super('provider_rejected', message, { cause: details.cause });
    this.providerCode = details.providerCode;
    this.status = details.status;
    this.grantRefused = details.grantRefused;
  }
}

/** The same refusal, marked as the provider refusing the connection's grant (`grantRefused`). */
export function asGrantRefused(error: ProviderRejectedError): ProviderRejectedError {
  return new ProviderRejectedError(error.message, {
    providerCode: error.providerCode,
    status: error.status,
    grantRefused: true,
    cause: error.cause,
  });
}

/** Timeout, network failure, 5xx, 429 or a body we cannot read: worth another try later. */
export class ProviderUnavailableError extends BrokerError {
  readonly status: number | undefined;
  constructor(message: string, details: { status?: number; cause?: unknown } = {}) {
    super('provider_unavailable', message, { cause: details.cause });
    this.status = details.status;
  }
}

/**
 * The provider's secret is missing, not a JSON object of strings, or lacks a field its kind needs:
 * the operator's to fix, not the caller's. The message names the provider and the fields, never a
 * value; where the secret lives (a secret name, a file path) goes to the logs only, as the cause.
 */
export class ProviderMisconfiguredError extends BrokerError {
  constructor(providerId: string, problem: string, options?: { cause?: unknown }) {
    super(
      'provider_misconfigured',
      `The ${providerId} provider is not set up: its secret ${problem}.`,
      options,
    );
  }
}

/** The person declined consent at the provider (or cancelled). */
export class AccessDeniedError extends BrokerError {
  constructor(message = 'The user declined or cancelled the connection at the provider.') {
    super('access_denied', message);
  }
}

/** A conditional write lost to a newer one. Internal: callers re-read and decide again. */
export class VersionConflictError extends Error {
  constructor(message = 'The connection changed since it was read.') {
    super(message);
    this.name = 'VersionConflictError';
  }
}

/** Configuration that cannot work; thrown once at start-up and names the offending key. */
export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

/**
 * Whether the error is the caller's (bad input, a refusal, the provider's answer): a warning in
 * the logs. Anything else (internal_error, provider_misconfigured, a bug) is an operator's to fix.
 */
export function isRefusal(error: unknown): error is BrokerError {
  return (
    error instanceof BrokerError &&
    error.code !== 'internal_error' &&
    error.code !== 'provider_misconfigured'
  );
}

/** The `{ code, message }` a caller sees; anything that is not a BrokerError becomes a generic one. */
export function toPublicError(error: unknown): { code: BrokerErrorCode; message: string } {
  // internal_error messages are for operators (secret names, file paths, missing settings): they
  // go to the logs, and callers and browsers get the generic one.
  if (error instanceof BrokerError && error.code !== 'internal_error') {
    return { code: error.code, message: error.message };
  }
  return { code: 'internal_error', message: 'The broker failed unexpectedly; see its logs.' };
}
