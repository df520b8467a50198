import { InvokeCommand, LambdaClient } from '@aws-sdk/client-lambda';
import type { BrokerErrorCode } from '../errors.ts';
import type { AccessTokenAnswer, SignedRequestAnswer } from '../token-answers.ts';

/**
 * The broker's error codes (shared/errors.ts), plus `invoke_failed` when the function could not be
 * invoked at all (not found, not allowed, network).
 */
export type TokenBrokerErrorCode = BrokerErrorCode | 'invoke_failed';

/** What the broker refused, or why it could not be asked. Never carries a token. */
export class TokenBrokerError extends Error {
  readonly code: TokenBrokerErrorCode;
  constructor(code: TokenBrokerErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'TokenBrokerError';
    this.code = code;
  }
}

/** A token as the `token` function serves it. */
export type BrokerToken = Omit<AccessTokenAnswer, 'ok'>;

/** A signed OAuth 1.0a header as the `token` function serves it (no token, no secret). */
export type BrokerSignedRequest = Omit<SignedRequestAnswer, 'ok'>;

export interface TokenBrokerClientOptions {
  /**
   * The token function's name or ARN (stack output TokenFunctionName / TokenFunctionArn, or the
   * SSM parameter `/oauth-token-broker/<stage>/token-function-arn`). Default `token`.
   */
  functionName?: string;
  /** A configured client; otherwise one is built from `endpoint` and `region`. */
  lambda?: LambdaClient;
  /** A Lambda-compatible endpoint, e.g. the offline runtime's http://localhost:3000. */
  endpoint?: string;
  /** Default: the region of a function ARN, else the SDK's (AWS_REGION). */
  region?: string;
  /** Serve a cached token only while it stays valid this long. Default 60. */
  defaultMinValiditySeconds?: number;
}

export interface GetTokenRequest {
  provider: string;
  /** Omit for client-credentials providers (their one connection is `default`). */
  connectionId?: string;
  minValiditySeconds?: number;
  /** Skip the cache and ask the broker to renew: the provider just refused the token. */
  forceRefresh?: boolean;
}

/** An OAuth 1.0a provider's request, to be signed by the broker exactly as it will be sent. */
export interface SignRequestInput {
  provider: string;
  connectionId: string;
  method: string;
  url: string;
  /** An application/x-www-form-urlencoded body (its parameters are signed); omit other bodies. */
  body?: string;
}

interface CachedToken {
  token: BrokerToken;
  /** Epoch ms; null when the token does not expire. */
  expiresAt: number | null;
  /** Order of the invoke that produced it, so a slower, older answer never replaces a newer one. */
  sequence: number;
}

const defaults = { functionName: 'token', defaultMinValiditySeconds: 60 };

/**
 * Gets tokens from the broker's `token` function for a service that calls providers' APIs.
 * Each answer is cached per provider and connection until it comes within the requested validity
 * of its expiry, and concurrent callers for the same connection share one invoke, so a busy
 * service invokes the broker about once per token lifetime.
 */
export class TokenBrokerClient {
  private readonly lambda: LambdaClient;
  private readonly functionName: string;
  private readonly defaultMinValiditySeconds: number;
  private readonly cache = new Map<string, CachedToken>();
  private readonly inFlight = new Map<string, Promise<CachedToken>>();
  private sequence = 0;

  constructor(options: TokenBrokerClientOptions = {}) {
    this.functionName = options.functionName ?? defaults.functionName;
    this.defaultMinValiditySeconds =
      options.defaultMinValiditySeconds ?? defaults.defaultMinValiditySeconds;
    if (!(this.defaultMinValiditySeconds >= 0)) {
      throw new TypeError('defaultMinValiditySeconds must be a number of seconds, 0 or more');
    }
    // A function ARN names its region (a consumer in another region or account, SSM parameter
    // /oauth-token-broker/<stage>/token-function-arn): the client calls Lambda there.
    const region = options.region ?? arnRegion(this.functionName);
    this.lambda =
      options.lambda ??
      new LambdaClient({
        ...(options.endpoint ? { endpoint: options.endpoint } : {}),
        ...(region ? { region } : {}),
      });
  }

  async getToken(request: GetTokenRequest): Promise<BrokerToken> {
    const minValiditySeconds = request.minValiditySeconds ?? this.defaultMinValiditySeconds;
    const key = `${request.provider}\u0000${request.connectionId ?? ''}`;
    if (request.forceRefresh) {
      // The caller saw this token refused: nobody else should be served it either.
      this.cache.delete(key);
    } else {
      const cached = this.cache.get(key);
      if (cached && validFor(cached, minValiditySeconds)) return cached.token;
      const pending = this.inFlight.get(key);
      if (pending) {
        const shared = await pending;
        if (validFor(shared, minValiditySeconds)) return shared.token;
      }
    }
    return (await this.fetch(key, request, minValiditySeconds)).token;
  }

  /**
   * The signed `Authorization: OAuth …` header for one request to an OAuth 1.0a provider. Never
   * cached or shared: each header carries its own nonce and timestamp and fits one request only.
   */
  async sign(request: SignRequestInput): Promise<BrokerSignedRequest> {
    const { provider, connectionId, method, url, body } = request;
    const answer = await this.invoke({
      provider,
      connectionId,
      sign: { method, url, ...(body !== undefined ? { body } : {}) },
    });
    if (
      isRecord(answer) &&
      answer.ok === true &&
      typeof answer.provider === 'string' &&
      typeof answer.connectionId === 'string' &&
      typeof answer.tokenType === 'string' &&
      typeof answer.authorization === 'string'
    ) {
      return {
        provider: answer.provider,
        connectionId: answer.connectionId,
        tokenType: answer.tokenType,
        authorization: answer.authorization,
      };
    }
    throw unexpectedAnswer();
  }

  /** Invokes the function; the promise is shared with callers that arrive meanwhile. */
  private fetch(
    key: string,
    request: GetTokenRequest,
    minValiditySeconds: number,
  ): Promise<CachedToken> {
    const sequence = (this.sequence += 1);
    const promise = this.invoke({ ...request, minValiditySeconds })
      .then(readTokenAnswer)
      .then((token) => {
        const entry: CachedToken = {
          token,
          expiresAt: token.expiresAt === null ? null : Date.parse(token.expiresAt),
          sequence,
        };
        const current = this.cache.get(key);
        if (!current || current.sequence < sequence) this.cache.set(key, entry);
        return entry;
      })
      .finally(() => {
        if (this.inFlight.get(key) === promise) this.inFlight.delete(key);
      });
    this.inFlight.set(key, promise);
    return promise;
  }

  /** The function's answer; its refusals thrown as TokenBrokerError. */
  private async invoke(request: unknown): Promise<unknown> {
    let out;
    try {
      out = await this.lambda.send(
        new InvokeCommand({
          FunctionName: this.functionName,
          Payload: new TextEncoder().encode(JSON.stringify(request)),
        }),
      );
    } catch (cause) {
      throw new TokenBrokerError(
        'invoke_failed',
        `Could not invoke the token function ${this.functionName} (${(cause as Error).name}).`,
        { cause },
      );
    }
    if (out.FunctionError) {
      // An unhandled error: the payload is Lambda's error report, for the function's logs only.
      throw new TokenBrokerError(
        'internal_error',
        `The token function ${this.functionName} failed (${out.FunctionError}).`,
      );
    }
    return readPayload(out.Payload);
  }
}

function arnRegion(functionName: string): string | undefined {
  return /^arn:aws[a-z-]*:lambda:([a-z0-9-]+):\d{12}:function:/.exec(functionName)?.[1];
}

function validFor(entry: CachedToken, minValiditySeconds: number): boolean {
  return entry.expiresAt === null || entry.expiresAt - Date.now() > minValiditySeconds * 1000;
}

/** Parses the answer and throws a refusal (`ok: false`) as the TokenBrokerError it names. */
function readPayload(payload: Uint8Array | undefined): unknown {
  let answer: unknown;
  try {
    answer = JSON.parse(new TextDecoder().decode(payload ?? new Uint8Array()));
  } catch {
    answer = undefined;
  }
  if (isRecord(answer) && answer.ok === false && isRecord(answer.error)) {
    const { code, message } = answer.error;
    if (typeof code === 'string' && typeof message === 'string') {
      throw new TokenBrokerError(code as TokenBrokerErrorCode, message);
    }
  }
  return answer;
}

/** Checks a token answer's shape; a malformed one is reported without echoing it (it may hold a token). */
function readTokenAnswer(answer: unknown): BrokerToken {
  if (
    isRecord(answer) &&
    answer.ok === true &&
    typeof answer.provider === 'string' &&
    typeof answer.connectionId === 'string' &&
    typeof answer.tokenType === 'string' &&
    typeof answer.accessToken === 'string' &&
    typeof answer.authorization === 'string' &&
    (answer.expiresAt === null ||
      (typeof answer.expiresAt === 'string' && !Number.isNaN(Date.parse(answer.expiresAt))))
  ) {
    return {
      provider: answer.provider,
      connectionId: answer.connectionId,
      tokenType: answer.tokenType,
      accessToken: answer.accessToken,
      expiresAt: answer.expiresAt,
      authorization: answer.authorization,
      // Older brokers sent no `headers`: the Authorization header is all they knew of.
      headers: isStringRecord(answer.headers)
        ? answer.headers
        : { Authorization: answer.authorization },
    };
  }
  throw unexpectedAnswer();
}

function unexpectedAnswer(): TokenBrokerError {
  return new TokenBrokerError('internal_error', 'The token function sent an unexpected answer.');
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isStringRecord(value: unknown): value is Record<string, string> {
  return isRecord(value) && Object.values(value).every((v) => typeof v === 'string');
}
