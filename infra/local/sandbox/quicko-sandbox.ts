import { randomBytes, randomInt, randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import {
  SandboxProviderBase,
  escapeHtml,
  sendJson,
  sendPage,
  type SandboxRequest,
} from './sandbox.ts';

/** A person part-way through the sandbox consent app (OTP sent, maybe verified). */
interface PendingLogin {
  apiKey: string;
  redirect: string;
  otp: string;
  verified: boolean;
  expiresAt: number;
}

/**
 * Sandbox Quicko (../shared/providers.md "Quicko", seeds/000):
 * - consent app: `GET /login?api_key=…&redirect=<base64 URL>` (also `redirect_url`, plain URLs,
 *   `options` as base64 JSON) → OTP form (the OTP is shown on the page: no SMS here) →
 *   `POST /login/otp` → consent screen → `POST /login/consent` → 302 to the redirect URI with
 *   `request_token` (10 minutes, single use), or `status=cancelled`;
 * - `POST /authenticate` (x-api-key, x-api-secret) → API-user token (24 h);
 * - `POST /oauth/authorize?request_token=…` (x-api-key, `Authorization: <API-user token>` bare):
 *   a request token → access (24 h) + refresh token (1 year); a refresh token → a new access
 *   token and no refresh token; 403 "Access token has expired" for a lapsed API-user token;
 * - `GET /me`, an Open API stand-in: `Authorization: <access token>` bare → 200, else 401.
 * Plain HTML forms, no script, so tests drive the pages with fetch.
 */
export class QuickoSandbox extends SandboxProviderBase {
  apiUserTokenSeconds = 86_400;
  accessTokenSeconds = 86_400;
  refreshTokenSeconds = 365 * 86_400;
  requestTokenSeconds = 600;
  /** How long a person has for the OTP and consent pages. */
  loginSeconds = 600;
  /** Where /oauth/authorize puts the tokens: under `data` (v2 envelope) or at the root. */
  tokensAt: 'data' | 'root' = 'data';
  private readonly logins = new Map<string, PendingLogin>();
  /** Request tokens already exchanged (by id): they are single use. */
  private readonly usedRequestTokens = new Set<string>();

  async handle(request: SandboxRequest, res: ServerResponse): Promise<void> {
    const { method, path } = request;
    if (method === 'GET' && path === '/login') return this.login(request, res);
    if (method === 'POST' && path === '/login/otp') return this.verifyOtp(request, res);
    if (method === 'POST' && path === '/login/consent') return this.consent(request, res);
    if (method === 'POST' && path === '/authenticate') return this.authenticate(request, res);
    if (method === 'POST' && path === '/oauth/authorize') return this.authorize(request, res);
    if (method === 'GET' && path === '/me') return this.me(request, res);
    sendJson(res, 404, this.envelope(404, { message: 'Not Found' }));
  }

  private login(request: SandboxRequest, res: ServerResponse): void {
    this.count('login');
    const apiKey = request.query.get('api_key') ?? '';
    if (!this.clients.has(apiKey)) {
      return sendPage(
        res,
        400,
        'Unknown app',
        '<p>No app with this <code>api_key</code>.</p>',
        this.kind,
      );
    }
    const redirect = decodeRedirect(
      request.query.get('redirect') ?? request.query.get('redirect_url') ?? '',
    );
    if (!redirect) {
      return sendPage(
        res,
        400,
        'Bad redirect',
        '<p>The <code>redirect</code> parameter must be an http(s) URL, base64-encoded or plain.</p>',
        this.kind,
      );
    }
    const options = request.query.get('options');
    if (options !== null && !isBase64JsonObject(options)) {
      return sendPage(
        res,
        400,
        'Bad options',
        '<p><code>options</code> must be base64 JSON.</p>',
        this.kind,
      );
    }
    const now = this.now();
    for (const [id, pending] of this.logins) if (pending.expiresAt <= now) this.logins.delete(id);
    const loginId = randomBytes(16).toString('base64url');
    const login: PendingLogin = {
      apiKey,
      redirect,
      otp: String(randomInt(0, 1_000_000)).padStart(6, '0'),
      verified: false,
      expiresAt: now + this.loginSeconds * 1000,
    };
    this.logins.set(loginId, login);
    sendPage(
      res,
      200,
      'Sign in to Quicko (sandbox)',
      otpForm(request.baseUrl, loginId, login),
      this.kind,
    );
  }

  private verifyOtp(request: SandboxRequest, res: ServerResponse): void {
    this.count('otp');
    const form = new URLSearchParams(request.body);
    const loginId = form.get('login') ?? '';
    const login = this.pendingLogin(loginId);
    if (!login)
      return sendPage(res, 400, 'Sign-in expired', '<p>Start again from the app.</p>', this.kind);
    if (form.get('otp') !== login.otp) {
      return sendPage(
        res,
        401,
        'Wrong OTP',
        `<p>That OTP is not right; try again.</p>${otpForm(request.baseUrl, loginId, login)}`,
        this.kind,
      );
    }
    login.verified = true;
    const app = escapeHtml(login.apiKey);
    const back = escapeHtml(new URL(login.redirect).origin);
    sendPage(
      res,
      200,
      'Allow access?',
      `<p>The app <code>${app}</code> (returning to ${back}) asks to access your Quicko data.</p>
<form method="post" action="${escapeHtml(`${request.baseUrl}/login/consent`)}">
<input type="hidden" name="login" value="${escapeHtml(loginId)}">
<button type="submit" name="decision" value="allow">Allow</button>
<button type="submit" name="decision" value="cancel">Cancel</button>
</form>`,
      this.kind,
    );
  }

  private consent(request: SandboxRequest, res: ServerResponse): void {
    this.count('consent');
    const form = new URLSearchParams(request.body);
    const loginId = form.get('login') ?? '';
    const login = this.pendingLogin(loginId);
    if (!login?.verified) {
      return sendPage(res, 400, 'Sign-in expired', '<p>Start again from the app.</p>', this.kind);
    }
    const decision = form.get('decision');
    if (decision !== 'allow' && decision !== 'cancel') {
      return sendPage(res, 400, 'Choose', '<p>Allow or Cancel.</p>', this.kind);
    }
    this.logins.delete(loginId);
    const target = new URL(login.redirect);
    if (decision === 'cancel') {
      target.searchParams.append('status', 'cancelled');
    } else {
      const expiresAt = this.now() + this.requestTokenSeconds * 1000;
      target.searchParams.append(
        'request_token',
        this.tokens.issue('request', login.apiKey, expiresAt),
      );
    }
    res.writeHead(302, { location: target.toString(), 'cache-control': 'no-store' }).end();
  }

  private async authenticate(request: SandboxRequest, res: ServerResponse): Promise<void> {
    this.count('authenticate');
    if (await this.applyFault(res)) return;
    const apiKey = header(request.headers, 'x-api-key');
    if (!this.clientAccepted(apiKey, header(request.headers, 'x-api-secret'))) {
      return sendJson(res, 401, this.envelope(401, { message: 'Unauthorized' }));
    }
    const token = this.tokens.issue(
      'api-user',
      apiKey,
      this.now() + this.apiUserTokenSeconds * 1000,
    );
    sendJson(res, 200, this.envelope(200, { data: { access_token: token } }));
  }

  private async authorize(request: SandboxRequest, res: ServerResponse): Promise<void> {
    this.count('authorize');
    if (await this.applyFault(res)) return;
    const now = this.now();
    const apiKey = header(request.headers, 'x-api-key');
    if (!apiKey || !this.clients.has(apiKey)) {
      return sendJson(res, 401, this.envelope(401, { message: 'Unauthorized' }));
    }
    // The API-user token goes bare; "Bearer …" is not a token this API knows. Verified at time 0
    // first, to tell a genuine but lapsed token ("expired") from a forged one.
    const apiUserToken = header(request.headers, 'authorization');
    const apiUser = this.tokens.verify(apiUserToken, 'api-user', 0);
    if (!apiUser || apiUser.cid !== apiKey) {
      return sendJson(res, 403, this.envelope(403, { message: 'Invalid access token' }));
    }
    if (apiUser.exp <= now) {
      return sendJson(res, 403, this.envelope(403, { message: 'Access token has expired' }));
    }
    const given = request.query.get('request_token');
    if (!given) {
      return sendJson(res, 400, this.envelope(400, { message: 'request_token is required' }));
    }
    const accessToken = () =>
      this.tokens.issue('access', apiKey, now + this.accessTokenSeconds * 1000);
    const requestToken = this.tokens.verify(given, 'request', now);
    if (
      requestToken &&
      requestToken.cid === apiKey &&
      !this.usedRequestTokens.has(requestToken.jti)
    ) {
      this.usedRequestTokens.add(requestToken.jti);
      return this.sendTokens(res, {
        access_token: accessToken(),
        refresh_token: this.tokens.issue('refresh', apiKey, now + this.refreshTokenSeconds * 1000),
      });
    }
    const refreshToken = this.tokens.verify(given, 'refresh', now);
    if (refreshToken && refreshToken.cid === apiKey) {
      // Quicko: a refresh token as request_token gives a new access token and no refresh token.
      return this.sendTokens(res, { access_token: accessToken() });
    }
    sendJson(res, 403, this.envelope(403, { message: 'Invalid or expired request token' }));
  }

  private me(request: SandboxRequest, res: ServerResponse): void {
    this.count('api');
    const claims = this.tokens.verify(
      header(request.headers, 'authorization'),
      'access',
      this.now(),
    );
    const apiKey = header(request.headers, 'x-api-key');
    // Like Quicko's APIs: the user's token bare, with the API key it was issued to.
    if (!claims || apiKey !== claims.cid) {
      return sendJson(res, 401, this.envelope(401, { message: 'Unauthorized' }));
    }
    sendJson(
      res,
      200,
      this.envelope(200, {
        data: { api_key: claims.cid, token_expires_at: new Date(claims.exp).toISOString() },
      }),
    );
  }

  private sendTokens(res: ServerResponse, tokens: Record<string, string>): void {
    sendJson(
      res,
      200,
      this.tokensAt === 'root' ? this.envelope(200, tokens) : this.envelope(200, { data: tokens }),
    );
  }

  private pendingLogin(loginId: string): PendingLogin | undefined {
    const login = this.logins.get(loginId);
    return login && login.expiresAt > this.now() ? login : undefined;
  }

  private envelope(code: number, fields: Record<string, unknown>): Record<string, unknown> {
    return { code, ...fields, timestamp: this.now(), transaction_id: randomUUID() };
  }
}

function header(headers: IncomingMessage['headers'], name: string): string | undefined {
  const value = headers[name];
  return Array.isArray(value) ? value[0] : value;
}

/** The redirect URI, plain or base64 (the docs' form); undefined unless it is an http(s) URL. */
function decodeRedirect(value: string): string | undefined {
  for (const candidate of [value, Buffer.from(value, 'base64').toString('utf8')]) {
    if (!/^https?:\/\//.test(candidate)) continue;
    try {
      return new URL(candidate).toString();
    } catch {
      // not a URL
    }
  }
  return undefined;
}

function isBase64JsonObject(value: string): boolean {
  try {
    const parsed: unknown = JSON.parse(Buffer.from(value, 'base64').toString('utf8'));
    return typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed);
  } catch {
    return false;
  }
}

function otpForm(baseUrl: string, loginId: string, login: PendingLogin): string {
  return `<p>We sent a one-time password to your phone. No SMS leaves the sandbox:
<strong>sandbox OTP: <span id="otp">${login.otp}</span></strong></p>
<form method="post" action="${escapeHtml(`${baseUrl}/login/otp`)}">
<input type="hidden" name="login" value="${escapeHtml(loginId)}">
<label>OTP <input name="otp" inputmode="numeric" autocomplete="one-time-code" required></label>
<button type="submit">Verify</button>
</form>`;
}
