import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import Provider, { type Adapter } from 'oidc-provider';
import { CookieJar } from 'tough-cookie';

/**
 * A real OAuth 2.0 / OpenID Connect authorization server for the tests: `oidc-provider` (panva)
 * on a loopback port, configured the way a careful provider would be — PKCE (S256) required,
 * refresh tokens for `offline_access`, rotated on every use (a reused one is refused and revokes
 * the grant), RFC 9207 `iss` in every authorization response. Its sign-in and consent pages are
 * two tiny forms served here, so nothing it prints reaches the test output.
 */

export interface OidcClient {
  client_id: string;
  client_secret: string;
  token_endpoint_auth_method: 'client_secret_basic' | 'client_secret_post';
}

export interface TestOidcProvider {
  /** The issuer identifier (`http://127.0.0.1:<port>`); the server sends it as `iss`. */
  issuer: string;
  authorizationUrl: string;
  tokenUrl: string;
  /**
   * A client authenticating with HTTP Basic, one sending its secret in the form body, and a
   * machine client allowed only the client_credentials grant (RFC 6749 §4.4).
   */
  clients: { basic: OidcClient; post: OidcClient; machine: OidcClient };
  /** RFC 7662 introspection with the machine client: whether the server still knows a token. */
  introspect(token: string): Promise<{ active: boolean; scope?: string; client_id?: string }>;
  /** Registers another redirect URI for every client (e.g. a broker's callback on its port). */
  allowRedirectUri(uri: string): void;
  /**
   * Plays the person's browser from `authorizationUrl`: follows redirects, signs in as `account`,
   * then approves (or denies) on the consent page; returns the URL the server redirected to at
   * the end — the client's callback with `code`, `state` and `iss`, or `error=access_denied` —
   * without fetching it. Pass a test browser's cookie jar to share its cookies.
   */
  consent(
    authorizationUrl: string,
    jar?: CookieJar,
    options?: { decision?: 'approve' | 'deny'; account?: string },
  ): Promise<string>;
  close(): Promise<void>;
}

export interface OidcProviderOptions {
  /** Redirect URIs every client accepts from the start (more with `allowRedirectUri`). */
  redirectUris?: string[];
  /** Extra scope values the server knows besides openid and offline_access. */
  scopes?: string[];
  accessTokenSeconds?: number;
}

type Payload = Record<string, unknown>;

/** oidc-provider's storage: one in-memory map per server, clients looked up from `clients`. */
class TestAdapter implements Adapter {
  constructor(
    private readonly model: string,
    private readonly store: Map<string, { payload: Payload; expiresAt: number }>,
    private readonly client: (id: string) => Payload | undefined,
  ) {}

  private key(id: string): string {
    return `${this.model}:${id}`;
  }

  async upsert(id: string, payload: Payload, expiresIn: number): Promise<void> {
    const expiresAt = Date.now() + expiresIn * 1000;
    this.store.set(this.key(id), { payload, expiresAt });
    if (this.model === 'Session') {
      this.store.set(`sessionUid:${String(payload.uid)}`, { payload: { id }, expiresAt });
    }
    if (typeof payload.grantId === 'string') {
      const grantKey = `grant:${payload.grantId}`;
      const members = (this.store.get(grantKey)?.payload.keys as string[] | undefined) ?? [];
      this.store.set(grantKey, {
        payload: { keys: [...members, this.key(id)] },
        expiresAt: Infinity,
      });
    }
  }

  async find(id: string): Promise<Payload | undefined> {
    if (this.model === 'Client') return this.client(id);
    const entry = this.store.get(this.key(id));
    return entry && entry.expiresAt > Date.now() ? entry.payload : undefined;
  }

  async findByUid(uid: string): Promise<Payload | undefined> {
    const id = this.store.get(`sessionUid:${uid}`)?.payload.id;
    return typeof id === 'string' ? this.find(id) : undefined;
  }

  async findByUserCode(): Promise<Payload | undefined> {
    return undefined;
  }

  async consume(id: string): Promise<void> {
    const entry = this.store.get(this.key(id));
    if (entry) entry.payload.consumed = Math.floor(Date.now() / 1000);
  }

  async destroy(id: string): Promise<void> {
    this.store.delete(this.key(id));
  }

  async revokeByGrantId(grantId: string): Promise<void> {
    const grantKey = `grant:${grantId}`;
    for (const key of (this.store.get(grantKey)?.payload.keys as string[] | undefined) ?? []) {
      this.store.delete(key);
    }
    this.store.delete(grantKey);
  }
}

const secret = () => randomBytes(24).toString('base64url');

export async function startOidcProvider(
  options: OidcProviderOptions = {},
): Promise<TestOidcProvider> {
  const redirectUris = new Set(options.redirectUris ?? []);
  const clients: { basic: OidcClient; post: OidcClient; machine: OidcClient } = {
    basic: {
      client_id: 'broker-basic',
      client_secret: secret(),
      token_endpoint_auth_method: 'client_secret_basic',
    },
    post: {
      client_id: 'broker-post',
      client_secret: secret(),
      token_endpoint_auth_method: 'client_secret_post',
    },
    machine: {
      client_id: 'broker-machine',
      client_secret: secret(),
      token_endpoint_auth_method: 'client_secret_basic',
    },
  };
  const clientMetadata = (id: string): Payload | undefined => {
    const client = Object.values(clients).find((c) => c.client_id === id);
    if (client === clients.machine) {
      return {
        ...client,
        redirect_uris: [],
        grant_types: ['client_credentials'],
        response_types: [],
        scope: (options.scopes ?? []).join(' '),
      };
    }
    return client
      ? {
          ...client,
          redirect_uris: [...redirectUris],
          grant_types: ['authorization_code', 'refresh_token'],
          response_types: ['code'],
        }
      : undefined;
  };

  let handle: (req: IncomingMessage, res: ServerResponse) => void = (_req, res) => {
    res.statusCode = 503;
    res.end();
  };
  const server = createServer((req, res) => handle(req, res));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  const store = new Map<string, { payload: Payload; expiresAt: number }>();
  const signingKey = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({
    format: 'jwk',
  });
  const provider = new Provider(issuer, {
    adapter: (model: string) => new TestAdapter(model, store, clientMetadata),
    jwks: { keys: [{ ...signingKey, kid: 'test-signing-key', use: 'sig', alg: 'RS256' }] },
    cookies: { keys: [secret()] },
    findAccount: async (_ctx: unknown, sub: string) => ({
      accountId: sub,
      claims: async () => ({ sub }),
    }),
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      introspection: { enabled: true },
    },
    interactions: {
      url: async (_ctx: unknown, interaction: { uid: string }) => `/interaction/${interaction.uid}`,
    },
    pkce: { required: () => true, methods: ['S256'] },
    scopes: ['openid', 'offline_access', ...(options.scopes ?? [])],
    rotateRefreshToken: true,
    ttl: {
      AccessToken: options.accessTokenSeconds ?? 3600,
      AuthorizationCode: 60,
      BackchannelAuthenticationRequest: 600,
      ClientCredentials: 600,
      DeviceCode: 600,
      Grant: 86_400,
      IdToken: 3600,
      Interaction: 600,
      RefreshToken: 86_400,
      Session: 86_400,
    },
    renderError: async (ctx: { type: string; body: string }, out: { error: string }) => {
      ctx.type = 'text/plain';
      ctx.body = `error: ${out.error}`;
    },
  });
  const oidc = provider.callback();
  handle = (req, res) => {
    const match = /^\/interaction\/([\w-]+)(?:\/(login|confirm|abort))?$/.exec(
      new URL(req.url ?? '/', issuer).pathname,
    );
    if (!match) return oidc(req, res);
    interaction(provider, req, res, match[2]).catch((error: unknown) => {
      res.statusCode = 500;
      res.end(`interaction failed: ${(error as Error).message}`);
    });
  };

  return {
    issuer,
    authorizationUrl: `${issuer}/auth`,
    tokenUrl: `${issuer}/token`,
    clients,
    introspect: async (token) => {
      const { client_id, client_secret } = clients.machine;
      const response = await fetch(`${issuer}/token/introspection`, {
        method: 'POST',
        headers: {
          authorization: `Basic ${Buffer.from(`${client_id}:${client_secret}`).toString('base64')}`,
          'content-type': 'application/x-www-form-urlencoded',
        },
        body: new URLSearchParams({ token }).toString(),
      });
      return (await response.json()) as { active: boolean; scope?: string; client_id?: string };
    },
    allowRedirectUri: (uri) => void redirectUris.add(uri),
    consent: (authorizationUrl, jar = new CookieJar(), consentOptions = {}) =>
      walkConsent(issuer, authorizationUrl, jar, consentOptions),
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.closeAllConnections();
        server.close((error) => (error ? reject(error) : resolve()));
      }),
  };
}

/** The sign-in and consent pages (what devInteractions does, minus its console notices). */
async function interaction(
  provider: Provider,
  req: IncomingMessage,
  res: ServerResponse,
  action: string | undefined,
): Promise<void> {
  const details = await provider.interactionDetails(req, res);
  const base = `/interaction/${details.uid}`;
  if (action === 'abort') {
    return provider.interactionFinished(
      req,
      res,
      { error: 'access_denied', error_description: 'End-User aborted interaction' },
      { mergeWithLastSubmission: false },
    );
  }
  if (action === 'login') {
    const form = new URLSearchParams(await readBody(req));
    return provider.interactionFinished(
      req,
      res,
      { login: { accountId: form.get('login') ?? 'alice' } },
      { mergeWithLastSubmission: false },
    );
  }
  if (action === 'confirm') {
    const { prompt, grantId, session, params } = details;
    const grant = grantId
      ? await provider.Grant.find(grantId)
      : new provider.Grant({
          accountId: session!.accountId!,
          clientId: String(params.client_id),
        });
    const missingScope = prompt.details.missingOIDCScope as string[] | undefined;
    if (missingScope) grant!.addOIDCScope(missingScope.join(' '));
    const missingResourceScopes = prompt.details.missingResourceScopes as
      Record<string, string[]> | undefined;
    for (const [indicator, scopes] of Object.entries(missingResourceScopes ?? {})) {
      grant!.addResourceScope(indicator, scopes.join(' '));
    }
    return provider.interactionFinished(
      req,
      res,
      { consent: { grantId: await grant!.save() } },
      { mergeWithLastSubmission: true },
    );
  }
  const page =
    details.prompt.name === 'login'
      ? `<form id="login" method="post" action="${base}/login"><input name="login" value="alice"><button>Sign in</button></form>`
      : `<p>Allow ${String(details.params.client_id)} access?</p><form id="approve" method="post" action="${base}/confirm"><button>Allow</button></form>`;
  res.setHeader('content-type', 'text/html; charset=utf-8');
  res.setHeader('cache-control', 'no-store');
  res.end(
    `<!doctype html><title>${details.prompt.name}</title>${page}<form id="deny" method="post" action="${base}/abort"><button>Cancel</button></form>`,
  );
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

async function walkConsent(
  issuer: string,
  start: string,
  jar: CookieJar,
  options: { decision?: 'approve' | 'deny'; account?: string },
): Promise<string> {
  const request = async (url: string, form?: Record<string, string>) => {
    const cookie = await jar.getCookieString(url);
    const response = await fetch(url, {
      method: form ? 'POST' : 'GET',
      redirect: 'manual',
      headers: {
        ...(cookie ? { cookie } : {}),
        ...(form ? { 'content-type': 'application/x-www-form-urlencoded' } : {}),
      },
      ...(form ? { body: new URLSearchParams(form).toString() } : {}),
    });
    for (const header of response.headers.getSetCookie()) {
      await jar.setCookie(header, url, { ignoreError: true });
    }
    return response;
  };

  let url = start;
  let form: Record<string, string> | undefined;
  for (let hop = 0; hop < 20; hop += 1) {
    const response = await request(url, form);
    form = undefined;
    const location = response.headers.get('location');
    if (response.status >= 300 && response.status < 400 && location) {
      await response.arrayBuffer();
      const next = new URL(location, url);
      // Leaving the authorization server: that is the client's callback.
      if (next.origin !== new URL(issuer).origin) return next.toString();
      url = next.toString();
      continue;
    }
    const html = await response.text();
    if (response.status !== 200) {
      throw new Error(`the authorization server answered ${response.status}: ${html}`);
    }
    const pick =
      options.decision === 'deny' ? 'deny' : /id="login"/.test(html) ? 'login' : 'approve';
    const action = new RegExp(`<form id="${pick}" method="post" action="([^"]+)"`).exec(html)?.[1];
    if (!action) throw new Error(`no ${pick} form on the authorization server's page`);
    url = new URL(action, url).toString();
    form = pick === 'login' ? { login: options.account ?? 'alice' } : {};
  }
  throw new Error('too many hops at the authorization server');
}
