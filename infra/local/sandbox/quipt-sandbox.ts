import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import {
  SandboxProviderBase,
  escapeHtml,
  sendJson,
  sendPage,
  type SandboxRequest,
} from './sandbox.ts';

/** Temporary credentials between initiate and token (RFC 5849 §2.1–§2.3). */
interface PendingAuthorization {
  consumerKey: string;
  secret: string;
  callback: string;
  expiresAt: number;
  /** Set when the person pressed Allow. */
  verifier?: string;
}

/** An OAuth problem (OAuth Problem Reporting): HTTP status and `oauth_problem` value. */
interface Problem {
  status: number;
  problem: string;
}

/** A request whose signature checked out (§3.2). */
interface Verified {
  consumerKey: string;
  params: Map<string, string>;
}

/**
 * Sandbox Quipt (../shared/providers.md "Quipt", seeds/003), OAuth 1.0a with HMAC-SHA1 verified
 * for real by its own RFC 5849 implementation below (it shares no code with the broker's signer):
 * - `POST /oauth/initiate` — `oauth_callback` in the signed header (consumer secret) →
 *   `oauth_token=…&oauth_token_secret=…&oauth_callback_confirmed=true`;
 * - `GET /oauth/authorizing?oauth_token=…` — an Allow / Deny page (`POST /oauth/authorizing`):
 *   302 to the callback with `oauth_token` and `oauth_verifier`, or `oauth_problem=user_refused`.
 *   The real page sits behind `#` in a single-page app; here it is a real path, plain HTML, so a
 *   test drives it with fetch;
 * - `POST /oauth/token` — signed with consumer + request-token secret, with `oauth_verifier`;
 *   the request token is single use → `oauth_token=…&oauth_token_secret=…` (no expiry);
 * - `GET /v2/me` — an API stand-in: 200 for a request signed with consumer + access-token secret.
 * Refusals are 400/401 with a form-encoded `oauth_problem` (§3.2). Access tokens are
 * self-verifying and their secrets derived from them, so a restart of `npm start` keeps them.
 */
export class QuiptSandbox extends SandboxProviderBase {
  requestTokenSeconds = 600;
  /** §3.3: requests whose timestamp is further than this from the clock are refused. */
  timestampWindowSeconds = 300;
  /** Content-Type of the credentials answers; the broker must read them whatever it says. */
  credentialsContentType = 'application/x-www-form-urlencoded';
  /**
   * Whether a denial carries `oauth_token` besides `oauth_problem=user_refused`. OAuth problem
   * reporting lets a provider send the problem alone; tests turn this off to prove the broker
   * still finds the flow.
   */
  denialCarriesToken = true;
  /**
   * The endpoint paths and the signature method. Quipt's by default; tests configure another
   * OAuth 1.0a provider with them (other paths, HMAC-SHA256) to prove the generic kind.
   */
  paths = {
    initiate: '/oauth/initiate',
    authorize: '/oauth/authorizing',
    token: '/oauth/token',
    api: '/v2/me',
  };
  signatureMethod: 'HMAC-SHA1' | 'HMAC-SHA256' = 'HMAC-SHA1';
  private readonly pending = new Map<string, PendingAuthorization>();
  /** Request tokens already exchanged, to tell "used" from "unknown". */
  private readonly exchanged = new Set<string>();
  /** §3.2: nonce/timestamp/token combinations seen, until their timestamp leaves the window. */
  private readonly nonces = new Map<string, number>();
  private readonly secretKey: Buffer;

  constructor(kind: string, clients: Map<string, string>, signingKey: Buffer, now: () => number) {
    super(kind, clients, signingKey, now);
    this.secretKey = signingKey;
  }

  async handle(request: SandboxRequest, res: ServerResponse): Promise<void> {
    const { method, path } = request;
    const paths = this.paths;
    if (method === 'POST' && path === paths.initiate) return this.initiate(request, res);
    if (method === 'GET' && path === paths.authorize) return this.authorizePage(request, res);
    if (method === 'POST' && path === paths.authorize) return this.decide(request, res);
    if (method === 'POST' && path === paths.token) return this.token(request, res);
    if (path === paths.api) return this.me(request, res);
    sendJson(res, 404, { error: 'not_found' });
  }

  private async initiate(request: SandboxRequest, res: ServerResponse): Promise<void> {
    this.count('initiate');
    if (await this.applyFault(res)) return;
    const verified = this.verify(request, () => '');
    if ('problem' in verified) return sendProblem(res, verified);
    if (verified.params.has('oauth_token')) {
      return sendProblem(res, { status: 400, problem: 'parameter_rejected' });
    }
    const callback = verified.params.get('oauth_callback');
    if (!callback)
      return sendProblem(res, { status: 400, problem: 'parameter_absent' }, 'oauth_callback');
    if (!isHttpUrl(callback))
      return sendProblem(res, { status: 400, problem: 'parameter_rejected' });

    const now = this.now();
    for (const [token, entry] of this.pending)
      if (entry.expiresAt <= now) this.pending.delete(token);
    const expiresAt = now + this.requestTokenSeconds * 1000;
    const token = this.tokens.issue('request', verified.consumerKey, expiresAt);
    const secret = randomBytes(24).toString('base64url');
    this.pending.set(token, { consumerKey: verified.consumerKey, secret, callback, expiresAt });
    this.sendCredentials(res, {
      oauth_token: token,
      oauth_token_secret: secret,
      oauth_callback_confirmed: 'true',
    });
  }

  private authorizePage(request: SandboxRequest, res: ServerResponse): void {
    this.count('authorize');
    const token = request.query.get('oauth_token') ?? '';
    const entry = this.undecided(token);
    if (!entry) {
      return sendPage(
        res,
        400,
        'Unknown request',
        '<p>This authorization request is unknown, expired or already answered. Start again from the app.</p>',
        this.kind,
      );
    }
    sendPage(
      res,
      200,
      'Authorize access to Quipt?',
      `<p>The application <code>${escapeHtml(entry.consumerKey)}</code> (returning to
${escapeHtml(new URL(entry.callback).origin)}) asks to access your Quipt account.</p>
<form method="post" action="${escapeHtml(`${request.baseUrl}${this.paths.authorize}`)}">
<input type="hidden" name="oauth_token" value="${escapeHtml(token)}">
<button type="submit" name="decision" value="allow">Allow</button>
<button type="submit" name="decision" value="deny">Deny</button>
</form>`,
      this.kind,
    );
  }

  private decide(request: SandboxRequest, res: ServerResponse): void {
    this.count('decision');
    const form = new URLSearchParams(request.body);
    const token = form.get('oauth_token') ?? '';
    const decision = form.get('decision');
    const entry = this.undecided(token);
    if (!entry)
      return sendPage(res, 400, 'Unknown request', '<p>Start again from the app.</p>', this.kind);
    if (decision !== 'allow' && decision !== 'deny') {
      return sendPage(res, 400, 'Choose', '<p>Allow or Deny.</p>', this.kind);
    }
    // §2.2: the parameters are appended to the callback's own query.
    const target = new URL(entry.callback);
    if (decision !== 'deny' || this.denialCarriesToken) {
      target.searchParams.append('oauth_token', token);
    }
    if (decision === 'deny') {
      this.pending.delete(token);
      target.searchParams.append('oauth_problem', 'user_refused');
    } else {
      entry.verifier = randomBytes(16).toString('base64url');
      target.searchParams.append('oauth_verifier', entry.verifier);
    }
    res.writeHead(302, { location: target.toString(), 'cache-control': 'no-store' }).end();
  }

  private async token(request: SandboxRequest, res: ServerResponse): Promise<void> {
    this.count('token');
    if (await this.applyFault(res)) return;
    const verified = this.verify(request, (token, consumerKey) => {
      const entry = token ? this.pending.get(token) : undefined;
      if (!entry || entry.expiresAt <= this.now() || entry.consumerKey !== consumerKey) {
        const used = token !== undefined && this.exchanged.has(token);
        return { status: 401, problem: used ? 'token_used' : 'token_rejected' };
      }
      return entry.secret;
    });
    if ('problem' in verified) return sendProblem(res, verified);
    const requestToken = verified.params.get('oauth_token')!;
    const entry = this.pending.get(requestToken)!;
    // A signed attempt uses the request token up, right or wrong (§2.3: used once; no guessing).
    this.pending.delete(requestToken);
    this.exchanged.add(requestToken);
    const given = verified.params.get('oauth_verifier');
    if (!given) {
      return sendProblem(res, { status: 400, problem: 'parameter_absent' }, 'oauth_verifier');
    }
    if (!entry.verifier || !sameString(given, entry.verifier)) {
      return sendProblem(res, { status: 401, problem: 'verifier_invalid' });
    }
    // Quipt's access credentials do not expire; the sandbox's last as long as JSON can count.
    const accessToken = this.tokens.issue('access', entry.consumerKey, Number.MAX_SAFE_INTEGER);
    this.sendCredentials(res, {
      oauth_token: accessToken,
      oauth_token_secret: this.accessTokenSecret(accessToken),
    });
  }

  private me(request: SandboxRequest, res: ServerResponse): void {
    this.count('api');
    const verified = this.verify(request, (token, consumerKey) => {
      const claims = this.tokens.verify(token, 'access', this.now());
      if (!token || claims?.cid !== consumerKey) return { status: 401, problem: 'token_rejected' };
      return this.accessTokenSecret(token);
    });
    if ('problem' in verified) return sendJson(res, verified.status, { error: verified.problem });
    sendJson(res, 200, { consumer_key: verified.consumerKey, method: request.method });
  }

  /**
   * Issues access credentials directly, as a completed consent would (tests that need a
   * connection without walking the pages).
   */
  issueAccessCredentials(consumerKey: string): { token: string; secret: string } {
    const token = this.tokens.issue('access', consumerKey, Number.MAX_SAFE_INTEGER);
    return { token, secret: this.accessTokenSecret(token) };
  }

  /** Derived, so it survives a restart with the sandbox signing key. */
  private accessTokenSecret(accessToken: string): string {
    return createHmac('sha256', this.secretKey)
      .update(`quipt-token-secret.${accessToken}`)
      .digest('base64url');
  }

  private undecided(token: string): PendingAuthorization | undefined {
    const entry = this.pending.get(token);
    return entry && entry.expiresAt > this.now() && !entry.verifier ? entry : undefined;
  }

  /**
   * RFC 5849 §3.2: a known consumer, HMAC-SHA1, version 1.0 if present, a timestamp within the
   * window, the signature recomputed over this request, and a nonce not seen before.
   * `tokenSecret` returns the secret of the request's `oauth_token` (or a refusal).
   */
  private verify(
    request: SandboxRequest,
    tokenSecret: (token: string | undefined, consumerKey: string) => string | Problem,
  ): Verified | Problem {
    const header = parseOAuthHeader(firstHeader(request.headers, 'authorization'));
    if (header === 'duplicate') return { status: 400, problem: 'parameter_rejected' };
    if (!header) return { status: 401, problem: 'parameter_absent' };
    for (const name of [
      'oauth_consumer_key',
      'oauth_signature_method',
      'oauth_timestamp',
      'oauth_nonce',
      'oauth_signature',
    ]) {
      if (!header.has(name)) return { status: 400, problem: 'parameter_absent' };
    }
    if (header.get('oauth_signature_method') !== this.signatureMethod) {
      return { status: 400, problem: 'signature_method_rejected' };
    }
    if (header.has('oauth_version') && header.get('oauth_version') !== '1.0') {
      return { status: 400, problem: 'version_rejected' };
    }
    const consumerKey = header.get('oauth_consumer_key')!;
    const consumerSecret = this.clients.get(consumerKey);
    if (consumerSecret === undefined) return { status: 401, problem: 'consumer_key_unknown' };
    const timestamp = Number(header.get('oauth_timestamp'));
    const now = this.now();
    if (
      !/^[1-9][0-9]*$/.test(header.get('oauth_timestamp')!) ||
      Math.abs(timestamp * 1000 - now) > this.timestampWindowSeconds * 1000
    ) {
      return { status: 401, problem: 'timestamp_refused' };
    }
    const secret = tokenSecret(header.get('oauth_token'), consumerKey);
    if (typeof secret !== 'string') return secret;

    const baseUri = this.baseStringUri(request);
    if (!baseUri) return { status: 400, problem: 'parameter_rejected' }; // a Host that is no host
    const expected = oauth1Signature(
      request.method,
      baseUri,
      requestParameters(request, header),
      consumerSecret,
      secret,
      this.signatureMethod,
    );
    if (!sameString(header.get('oauth_signature')!, expected)) {
      return { status: 401, problem: 'signature_invalid' };
    }

    for (const [key, until] of this.nonces) if (until <= now) this.nonces.delete(key);
    const nonceKey = [
      consumerKey,
      header.get('oauth_token') ?? '',
      timestamp,
      header.get('oauth_nonce'),
    ].join('\n');
    if (this.nonces.has(nonceKey)) return { status: 401, problem: 'nonce_used' };
    this.nonces.set(nonceKey, timestamp * 1000 + this.timestampWindowSeconds * 1000);
    return { consumerKey, params: header };
  }

  /**
   * §3.4.1.2: the URI the client addressed, from the Host header the way a server sees it (the
   * sandbox is served over plain http).
   */
  private baseStringUri(request: SandboxRequest): string | undefined {
    const configured = new URL(request.baseUrl);
    const host = firstHeader(request.headers, 'host') ?? configured.host;
    const uri = `${configured.protocol}//${host}${configured.pathname}${request.path}`;
    return URL.canParse(uri) ? uri : undefined;
  }

  private sendCredentials(res: ServerResponse, fields: Record<string, string>): void {
    res
      .writeHead(200, { 'content-type': this.credentialsContentType, 'cache-control': 'no-store' })
      .end(new URLSearchParams(fields).toString());
  }
}

// --- RFC 5849 on the server side, written independently of the broker's signer ---

/** §3.6: percent-encode everything but ALPHA / DIGIT / "-" / "." / "_" / "~", as UTF-8. */
export function rfc5849Encode(value: string): string {
  let out = '';
  for (const byte of Buffer.from(value, 'utf8')) {
    const c = String.fromCharCode(byte);
    out += /[A-Za-z0-9\-._~]/.test(c) ? c : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

/**
 * §3.5.1: `OAuth name="value", …` → decoded parameters, `realm` excluded (§3.4.1.3.1);
 * undefined when it is not an OAuth header, "duplicate" when a parameter repeats (§3.1 step 2).
 */
export function parseOAuthHeader(
  value: string | undefined,
): Map<string, string> | 'duplicate' | undefined {
  const match = /^OAuth\s+(.*)$/is.exec(value ?? '');
  if (!match) return undefined;
  const params = new Map<string, string>();
  // Values are percent-encoded (§3.6), so neither a comma nor a quote can occur inside one.
  for (const part of match[1]!.split(',')) {
    const pair = /^\s*([^\s="]+)\s*=\s*"([^"]*)"\s*$/.exec(part);
    const name = pair && safeDecode(pair[1]!);
    const decoded = pair && safeDecode(pair[2]!);
    if (name == null || decoded == null) return undefined;
    if (name === 'realm') continue;
    if (params.has(name)) return 'duplicate';
    params.set(name, decoded);
  }
  return params;
}

/**
 * §3.4.1.3.1: the query, the OAuth header's parameters (without oauth_signature), and a form body
 * when the Content-Type says application/x-www-form-urlencoded. Name/value pairs, repeats kept.
 */
function requestParameters(
  request: SandboxRequest,
  header: Map<string, string>,
): [string, string][] {
  const pairs: [string, string][] = [...request.query];
  for (const [name, value] of header) if (name !== 'oauth_signature') pairs.push([name, value]);
  const type = firstHeader(request.headers, 'content-type') ?? '';
  if (/^application\/x-www-form-urlencoded\b/i.test(type) && request.body) {
    pairs.push(...new URLSearchParams(request.body));
  }
  return pairs;
}

/** §3.4.1.1 with §3.4.1.3.2: the signature base string over decoded name/value pairs. */
export function oauth1BaseString(
  method: string,
  baseUri: string,
  pairs: [string, string][],
): string {
  // §3.4.1.2: the URL parser lower-cases scheme and host and leaves a default port out.
  const uri = new URL(baseUri);
  const normalisedUri = `${uri.protocol}//${uri.host}${uri.pathname}`;
  // §3.4.1.3.2: encode names and values, sort by name then value (byte order), join.
  const encoded = pairs.map(
    ([name, value]) => [rfc5849Encode(name), rfc5849Encode(value)] as const,
  );
  encoded.sort(([an, av], [bn, bv]) => compareBytes(an, bn) || compareBytes(av, bv));
  const normalised = encoded.map(([name, value]) => `${name}=${value}`).join('&');
  return [
    rfc5849Encode(method.toUpperCase()),
    rfc5849Encode(normalisedUri),
    rfc5849Encode(normalised),
  ].join('&');
}

/**
 * §3.4.2: HMAC-SHA1 (or the same construction with SHA-256) keyed with the encoded consumer and
 * token secrets, base64.
 */
export function oauth1Signature(
  method: string,
  baseUri: string,
  pairs: [string, string][],
  consumerSecret: string,
  tokenSecret: string,
  signatureMethod: 'HMAC-SHA1' | 'HMAC-SHA256' = 'HMAC-SHA1',
): string {
  const hash = signatureMethod === 'HMAC-SHA256' ? 'sha256' : 'sha1';
  return createHmac(hash, `${rfc5849Encode(consumerSecret)}&${rfc5849Encode(tokenSecret)}`)
    .update(oauth1BaseString(method, baseUri, pairs))
    .digest('base64');
}

function compareBytes(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}

function safeDecode(value: string): string | undefined {
  try {
    return decodeURIComponent(value);
  } catch {
    return undefined;
  }
}

function sameString(a: string, b: string): boolean {
  const left = Buffer.from(a);
  const right = Buffer.from(b);
  return left.length === right.length && timingSafeEqual(left, right);
}

function isHttpUrl(value: string): boolean {
  try {
    return /^https?:$/.test(new URL(value).protocol);
  } catch {
    return false;
  }
}

function firstHeader(headers: IncomingMessage['headers'], name: string): string | undefined {
  const value = headers[name];
  return Array.isArray(value) ? value[0] : value;
}

function sendProblem(res: ServerResponse, problem: Problem, absent?: string): void {
  res
    .writeHead(problem.status, {
      'content-type': 'application/x-www-form-urlencoded',
      'cache-control': 'no-store',
    })
    .end(
      new URLSearchParams({
        oauth_problem: problem.problem,
        ...(absent ? { oauth_parameters_absent: absent } : {}),
      }).toString(),
    );
}
