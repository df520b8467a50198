import type { ServerResponse } from 'node:http';
import { parseBody, SandboxProviderBase, sendJson, type SandboxRequest } from './sandbox.ts';

const failure = (code: string, message: string, errors?: { field: string; message: string }[]) => ({
  success: false,
  error: { code, message, ...(errors ? { metadata: { errors } } : {}) },
});

/**
 * Sandbox Quidkey (../shared/providers.md "Quidkey"): `{success,data}` envelopes,
 * `POST /api/v1/oauth2/token` (client credentials → access + refresh token),
 * `POST /api/v1/oauth2/refresh` (→ a new access token, no new refresh token),
 * `GET /api/v1/me` (401 NO_TOKEN / INVALID_TOKEN as the real API does).
 */
export class QuidkeySandbox extends SandboxProviderBase {
  accessTokenSeconds = 900;
  refreshTokenSeconds = 86_400;
  /** The API reference shows a refresh token in refresh answers (the guide says none): both occur. */
  refreshReturnsRefreshToken = false;
  /**
   * Strict rotation, as many OAuth servers do it: every refresh answer carries a new refresh
   * token and a used one is refused. Lets the tests prove that no race loses a refresh token.
   */
  rotateRefreshTokens = false;
  /**
   * With rotation: how long a used refresh token is still accepted (seconds), as many OAuth
   * servers allow so that a client whose answer was lost can retry (30 s is a common setting).
   * 0: a used refresh token is refused at once.
   */
  rotationGraceSeconds = 0;
  /** Refresh tokens already used (by id), with when they were first used, for rotation. */
  private readonly usedRefreshTokens = new Map<string, number>();
  /** Refreshes refused because the refresh token had been used already. */
  reusedRefreshTokens = 0;
  /** Refreshes with a used refresh token accepted within the grace period. */
  graceReuses = 0;

  async handle(request: SandboxRequest, res: ServerResponse): Promise<void> {
    const now = this.now();
    if (request.method === 'POST' && request.path === '/api/v1/oauth2/token') {
      this.count('token');
      if (await this.applyFault(res)) return;
      const body = parseBody(request);
      const missing = ['grant_type', 'client_id', 'client_secret'].filter(
        (field) => typeof body[field] !== 'string',
      );
      if (missing.length > 0 || body.grant_type !== 'client_credentials') {
        return sendJson(
          res,
          400,
          failure(
            'VALIDATION_ERROR',
            'Invalid request',
            missing.map((field) => ({ field, message: 'is required' })),
          ),
        );
      }
      if (!this.clientAccepted(body.client_id, body.client_secret)) {
        return sendJson(res, 401, failure('INVALID_CLIENT', 'Invalid client credentials'));
      }
      return sendJson(res, 200, {
        success: true,
        data: {
          access_token: this.tokens.issue(
            'access',
            body.client_id,
            now + this.accessTokenSeconds * 1000,
          ),
          refresh_token: this.tokens.issue(
            'refresh',
            body.client_id,
            now + this.refreshTokenSeconds * 1000,
          ),
          token_type: 'Bearer',
          expires_in: this.accessTokenSeconds,
        },
      });
    }
    if (request.method === 'POST' && request.path === '/api/v1/oauth2/refresh') {
      this.count('refresh');
      if (await this.applyFault(res)) return;
      const body = parseBody(request);
      if (typeof body.refresh_token !== 'string') {
        return sendJson(
          res,
          400,
          failure('VALIDATION_ERROR', 'Invalid request', [
            { field: 'refresh_token', message: 'is required' },
          ]),
        );
      }
      const claims = this.tokens.verify(body.refresh_token, 'refresh', now);
      if (!claims)
        return sendJson(res, 401, failure('INVALID_TOKEN', 'Refresh token is invalid or expired'));
      if (this.rotateRefreshTokens) {
        const firstUsedAt = this.usedRefreshTokens.get(claims.jti);
        if (firstUsedAt === undefined) this.usedRefreshTokens.set(claims.jti, now);
        else if (now - firstUsedAt < this.rotationGraceSeconds * 1000) this.graceReuses += 1;
        else {
          this.reusedRefreshTokens += 1;
          return sendJson(res, 401, failure('INVALID_TOKEN', 'Refresh token was already used'));
        }
      }
      return sendJson(res, 200, {
        success: true,
        data: {
          access_token: this.tokens.issue(
            'access',
            claims.cid,
            now + this.accessTokenSeconds * 1000,
          ),
          ...(this.refreshReturnsRefreshToken || this.rotateRefreshTokens
            ? {
                refresh_token: this.tokens.issue(
                  'refresh',
                  claims.cid,
                  now + this.refreshTokenSeconds * 1000,
                ),
              }
            : {}),
          token_type: 'Bearer',
          expires_in: this.accessTokenSeconds,
        },
      });
    }
    if (request.method === 'GET' && request.path === '/api/v1/me') {
      this.count('api');
      const token = this.bearer(request.headers);
      if (!token) return sendJson(res, 401, failure('NO_TOKEN', 'No token provided'));
      const claims = this.tokens.verify(token, 'access', now);
      if (!claims)
        return sendJson(res, 401, failure('INVALID_TOKEN', 'Token is invalid or expired'));
      return sendJson(res, 200, {
        success: true,
        data: { client_id: claims.cid, token_expires_at: new Date(claims.exp).toISOString() },
      });
    }
    sendJson(res, 404, failure('NOT_FOUND', 'No such endpoint'));
  }
}
