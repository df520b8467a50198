import pRetry from 'p-retry';
import { ProviderRejectedError, ProviderUnavailableError } from '../errors.ts';

export interface ProviderRequest {
  /** Names the call in errors and logs, e.g. "<provider id> token"; never holds a secret. */
  label: string;
  method: 'GET' | 'POST';
  url: string;
  headers?: Record<string, string>;
  body?: string;
  /** True only when repeating the request cannot lose anything (e.g. a client-credentials mint). */
  retrySafe: boolean;
}

export interface ProviderResponse {
  status: number;
  headers: Headers;
  text: string;
}

export interface ProviderHttpOptions {
  timeoutMs: number;
  /** Further attempts after the first, for retry-safe requests that failed transiently. */
  retries: number;
  minRetryDelayMs: number;
}

export const defaultHttpOptions: ProviderHttpOptions = {
  timeoutMs: 5_000,
  retries: 2,
  minRetryDelayMs: 200,
};

/**
 * Sends a request and reads its answer with `read`, which runs inside the retry loop: an
 * unreadable 2xx body is as transient as a 503, and is retried the same way when that is safe.
 */
export type ProviderHttp = <T>(
  request: ProviderRequest,
  read: (response: ProviderResponse) => T,
) => Promise<T>;

/**
 * Calls a provider and classifies the outcome in one place: 2xx is returned; 429, 5xx, timeouts
 * and network failures become ProviderUnavailableError (transient); any other status becomes
 * ProviderRejectedError (permanent). Transient failures are retried with exponential backoff and
 * full jitter, only when the request says a retry is safe.
 */
export function createProviderHttp(options: Partial<ProviderHttpOptions> = {}): ProviderHttp {
  const { timeoutMs, retries, minRetryDelayMs } = { ...defaultHttpOptions, ...options };
  const once = async (request: ProviderRequest): Promise<ProviderResponse> => {
    let response: Response;
    let text: string;
    try {
      response = await fetch(request.url, {
        method: request.method,
        headers: request.headers,
        body: request.body,
        redirect: 'manual',
        signal: AbortSignal.timeout(timeoutMs),
      });
      text = await response.text();
    } catch (cause) {
      const timedOut = cause instanceof Error && cause.name === 'TimeoutError';
      throw new ProviderUnavailableError(
        timedOut
          ? `The ${request.label} call timed out after ${timeoutMs} ms.`
          : `The ${request.label} call failed before an answer arrived.`,
        { cause },
      );
    }
    if (response.status >= 200 && response.status < 300) {
      return { status: response.status, headers: response.headers, text };
    }
    if (response.status === 429 || response.status >= 500) {
      throw new ProviderUnavailableError(
        `The ${request.label} call answered HTTP ${response.status}.`,
        { status: response.status },
      );
    }
    const providerCode = providerErrorCode(text);
    throw new ProviderRejectedError(
      `The ${request.label} call was refused (HTTP ${response.status}${providerCode ? `, ${providerCode}` : ''}).`,
      { status: response.status, providerCode },
    );
  };

  return (request, read) =>
    pRetry(async () => read(await once(request)), {
      retries: request.retrySafe ? retries : 0,
      minTimeout: minRetryDelayMs,
      factor: 2,
      randomize: true,
      shouldRetry: (error) => error instanceof ProviderUnavailableError,
    });
}

/**
 * The provider's error code from an error body, if it has a recognisable one: RFC 6749 §5.2
 * `{"error":"invalid_grant"}` or an envelope `{"error":{"code":"…"}}`. Only short identifier-like
 * values are kept, so a description (which could echo input) never reaches a message.
 */
export function providerErrorCode(text: string): string | undefined {
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (!isRecord(body)) return undefined;
  const error = body.error;
  const code = typeof error === 'string' ? error : isRecord(error) ? error.code : body.code;
  return typeof code === 'string' && /^[A-Za-z0-9_.-]{1,64}$/.test(code) ? code : undefined;
}

/** Parses a provider's JSON body; anything unreadable is a transient provider failure. */
export function parseJson(response: ProviderResponse, label: string): Record<string, unknown> {
  try {
    const body: unknown = JSON.parse(response.text);
    if (isRecord(body)) return body;
  } catch {
    // fall through
  }
  throw new ProviderUnavailableError(`The ${label} answer was not a JSON object.`, {
    status: response.status,
  });
}

export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * Reads an RFC 6749 §5.1 style token answer (`access_token`, `expires_in`, optional
 * `refresh_token`, `token_type`) from an object. A body without an access token is garbage:
 * transient, because a conforming provider would not send it twice.
 */
export function readOAuthTokenFields(
  body: Record<string, unknown>,
  label: string,
  now: number,
): { accessToken: string; expiresAt?: number; refreshToken?: string; tokenType: string } {
  const accessToken = body.access_token;
  if (typeof accessToken !== 'string' || accessToken.length === 0) {
    throw new ProviderUnavailableError(`The ${label} answer carried no access token.`);
  }
  const expiresIn = Number(body.expires_in);
  const refreshToken = body.refresh_token;
  const rawType = typeof body.token_type === 'string' ? body.token_type : 'Bearer';
  return {
    accessToken,
    // RFC 6749 §5.1: expires_in is RECOMMENDED; without it the token is treated as expiring soon
    // by the caller's own policy, so we record no expiry rather than invent one.
    ...(Number.isFinite(expiresIn) && expiresIn > 0 ? { expiresAt: now + expiresIn * 1000 } : {}),
    ...(typeof refreshToken === 'string' && refreshToken.length > 0 ? { refreshToken } : {}),
    tokenType: rawType.toLowerCase() === 'bearer' ? 'Bearer' : rawType,
  };
}
