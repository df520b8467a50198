import type { ServerResponse } from 'node:http';
import { parseBody, SandboxProviderBase, sendJson, type SandboxRequest } from './sandbox.ts';

/**
 * Sandbox Quiqup (../shared/providers.md "Quiqup"): `POST /oauth/token` with client credentials in
 * JSON or form encoding; 401 `invalid_client` for bad credentials, 400 for another grant type.
 * `GET /me` accepts a live access token (stands in for any Quiqup API call).
 */
export class QuiqupSandbox extends SandboxProviderBase {
  /** Token lifetime; Quiqup staging gives 3600 s, production 604800 s. */
  accessTokenSeconds = 3600;

  async handle(request: SandboxRequest, res: ServerResponse): Promise<void> {
    if (request.method === 'POST' && request.path === '/oauth/token') {
      this.count('token');
      if (await this.applyFault(res)) return;
      const body = parseBody(request);
      if (body.grant_type !== 'client_credentials') {
        return sendJson(res, 400, {
          error: 'unsupported_grant_type',
          error_description: 'grant_type must be client_credentials',
        });
      }
      if (!this.clientAccepted(body.client_id, body.client_secret)) {
        return sendJson(res, 401, {
          error: 'invalid_client',
          error_description: 'Client authentication failed',
        });
      }
      const now = this.now();
      return sendJson(res, 200, {
        access_token: this.tokens.issue(
          'access',
          body.client_id,
          now + this.accessTokenSeconds * 1000,
        ),
        created_at: Math.floor(now / 1000),
        expires_in: this.accessTokenSeconds,
        token_type: 'bearer',
      });
    }
    if (request.method === 'GET' && request.path === '/me') {
      this.count('api');
      const claims = this.tokens.verify(this.bearer(request.headers), 'access', this.now());
      if (!claims)
        return sendJson(res, 401, {
          error: 'invalid_token',
          error_description: 'The access token is invalid or has expired',
        });
      return sendJson(res, 200, {
        client_id: claims.cid,
        token_expires_at: new Date(claims.exp).toISOString(),
      });
    }
    sendJson(res, 404, { error: 'not_found' });
  }
}
