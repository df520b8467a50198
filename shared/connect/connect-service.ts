import { randomBytes, timingSafeEqual } from 'node:crypto';
import type { BrokerConfig } from '../config.ts';
import {
  BrokerError,
  InvalidRequestError,
  isRefusal,
  VersionConflictError,
  toPublicError,
} from '../errors.ts';
import { publishSafely, type EventPublisher } from '../events.ts';
import type { BrokerLogger } from '../logger.ts';
import { describeError } from '../middleware.ts';
import { defaultHttpOptions } from '../providers/http.ts';
import { getProvider, type ResolvedProvider } from '../providers/resolve.ts';
import {
  hasConsentFlow,
  type CallbackParams,
  type ConsentStart,
  type ConsentProtocol,
  type ProvidedCredentialsProtocol,
  type TokenSet,
} from '../providers/types.ts';
import { nextDueAt } from '../refresh.ts';
import type { Connection, ConnectionStore } from '../store/connection-store.ts';
import type { ConnectionDirectory } from '../store/connection-directory.ts';
import { hashOf, type ConnectSession, type FlowStore } from './flow-store.ts';
import { assertAllowedReturnTo } from './return-to.ts';

export interface ConnectDeps {
  config: BrokerConfig;
  providers: Map<string, ResolvedProvider>;
  flows: FlowStore;
  store: ConnectionStore;
  /** Reads items without decrypting (a reconnect over unreadable tokens). */
  directory: ConnectionDirectory;
  events: EventPublisher;
  logger: BrokerLogger;
  now: () => number;
}

/** The cookie that binds a flow to the browser that started it. */
export interface FlowCookie {
  name: string;
  value: string;
  /** Path of our callback route: the browser sends it nowhere else. */
  path: string;
  maxAgeSeconds: number;
  /** Secure everywhere except plain-http localhost (the offline runtime). */
  secure: boolean;
}

/**
 * What the start route does next: send the browser to the provider's consent page, or (api_key,
 * basic) show our own form, which posts the credentials to the callback route.
 */
export type FlowStarted =
  { authorizationUrl: string; cookie: FlowCookie } | { form: CredentialsForm; cookie: FlowCookie };

/** The hosted credentials form: posted to `action` with `state`; no value ever in a URL. */
export interface CredentialsForm {
  provider: string;
  displayName: string;
  action: string;
  state: string;
  fields: { name: string; label: string; secret: boolean }[];
}

/** What the callback route shows or redirects to once a flow is found, bound and consumed. */
export type FlowOutcome =
  | { ok: true; provider: string; connectionId: string; returnTo?: string; cookieName: string }
  | {
      ok: false;
      provider: string;
      connectionId: string;
      returnTo?: string;
      cookieName: string;
      error: { code: string; message: string };
    };

/**
 * A connect-flow step refused before anything was consumed or stored: unknown, expired or
 * replayed links and flows, a browser that did not start the flow, malformed parameters.
 */
export class ConnectFlowError extends InvalidRequestError {}

const BEARER_PATTERN = /^[A-Za-z0-9_-]{20,200}$/;

/**
 * Connect sessions and consent flows (docs/architecture.md, "Connect flows"):
 * a backend creates a single-use session → the browser opens it (start route): the flow is
 * recorded server-side and bound to the browser by a cookie → the provider redirects back
 * (callback route): the flow is found, checked against the cookie, consumed exactly once, and the
 * tokens are exchanged and stored encrypted.
 */
export class ConnectService {
  constructor(private readonly deps: ConnectDeps) {}

  /** A URL that lets one person connect `connectionId` once, within the session lifetime. */
  async createConnectSession(request: {
    provider: string;
    connectionId: string;
    returnTo?: string;
    params?: Record<string, string>;
  }): Promise<{ ok: true; url: string; expiresAt: string }> {
    const provider = this.flowProvider(request.provider);
    if (request.returnTo !== undefined) {
      assertAllowedReturnTo(request.returnTo, this.deps.config.allowedReturnTo);
    }
    const connectionParams = checkConnectionParams(
      provider.id,
      this.deps.config.providers[provider.id]?.connectionParams,
      request.params,
    );
    const token = randomBytes(32).toString('base64url');
    const expiresAt = this.deps.now() + this.deps.config.connect.sessionTtlSeconds * 1000;
    await this.deps.flows.putSession(hashOf(token), {
      provider: provider.id,
      connectionId: request.connectionId,
      ...(request.returnTo !== undefined ? { returnTo: request.returnTo } : {}),
      ...(connectionParams ? { connectionParams } : {}),
      expiresAt,
    });
    this.deps.logger.info('connect session created', {
      provider: provider.id,
      connectionId: request.connectionId,
    });
    const url = new URL(`${this.publicBaseUrl()}/connect/${encodeURIComponent(provider.id)}`);
    url.searchParams.set('session', token);
    return { ok: true, url: url.toString(), expiresAt: new Date(expiresAt).toISOString() };
  }

  /**
   * The start route: claims the session, asks the provider to start consent, records the flow,
   * consumes the session and binds the flow to this browser. The claim comes before the provider
   * call, so of many opens of one link exactly one reaches the provider; the session is consumed
   * only after the provider answered, so a provider failure gives the link back for another try.
   */
  async startFlow(providerId: string, sessionToken: string | undefined): Promise<FlowStarted> {
    const provider = this.flowProvider(providerId);
    if (!sessionToken || !BEARER_PATTERN.test(sessionToken)) {
      throw new ConnectFlowError('This connect link has no valid session.');
    }
    const sessionHash = hashOf(sessionToken);
    const now = this.deps.now();
    // Read first, so a link that cannot be used is refused without any write.
    const refusal = sessionRefusal(await this.deps.flows.getSession(sessionHash), provider.id, now);
    if (refusal) throw refusal;
    const claimant = randomBytes(16).toString('base64url');
    const session = await this.deps.flows.claimSession(sessionHash, {
      provider: provider.id,
      claimant,
      now,
      until: now + this.sessionClaimMs(provider.id),
    });
    if (!session) {
      // Another start claimed it (or used it up) since the read.
      throw (
        sessionRefusal(await this.deps.flows.getSession(sessionHash), provider.id, now) ??
        new ConnectFlowError(
          'This connect link is already being used in another request; open it once.',
        )
      );
    }

    const state = randomBytes(32).toString('base64url');
    const callbackUrl = this.callbackUrl(provider.id);
    const browserToken = randomBytes(32).toString('base64url');
    const flowTtlSeconds = this.deps.config.connect.flowTtlSeconds;
    // A credentials form asks no provider: the person types the values into our own page.
    let started: ConsentStart | undefined;
    let handleHash: string;
    try {
      started =
        provider.kind.variant === 'provided-credentials'
          ? undefined
          : await provider.kind.startConsent(provider.context, {
              callbackUrl,
              state,
              ...(session.connectionParams ? { connectionParams: session.connectionParams } : {}),
            });
      handleHash = flowHandleHash(provider.id, state);
      await this.deps.flows.putFlow(handleHash, {
        provider: provider.id,
        connectionId: session.connectionId,
        ...(session.returnTo ? { returnTo: session.returnTo } : {}),
        state,
        callbackUrl: started?.callbackUrl ?? callbackUrl,
        browserHash: hashOf(browserToken),
        flowSecrets: started?.flowSecrets ?? {},
        ...(session.connectionParams ? { connectionParams: session.connectionParams } : {}),
        expiresAt: now + flowTtlSeconds * 1000,
      });
    } catch (error) {
      // The link stays usable: give the claim back now rather than when it lapses.
      await this.deps.flows.releaseSession(sessionHash, claimant).catch((releaseError) => {
        this.deps.logger.warn('connect session claim not released; it lapses by itself', {
          provider: provider.id,
          reason: describeError(releaseError),
        });
      });
      throw error;
    }
    if (!(await this.deps.flows.consumeSession(sessionHash, claimant))) {
      // Our claim lapsed mid-start and another start took the link: this flow has no cookie.
      await this.deps.flows.consumeFlow(handleHash);
      throw new ConnectFlowError('This connect link was used by another request; open it once.');
    }
    this.deps.logger.info('connect flow started', {
      provider: provider.id,
      connectionId: session.connectionId,
    });
    const cookie = {
      name: flowCookieName(handleHash),
      value: browserToken,
      path: new URL(callbackUrl).pathname,
      maxAgeSeconds: flowTtlSeconds,
      secure: !isPlainHttpLocalhost(callbackUrl),
    };
    if (!started) {
      const entry = this.deps.config.providers[provider.id];
      const fields = (entry?.credentialFields ?? {}) as Record<
        string,
        { label: string; secret: boolean }
      >;
      return {
        form: {
          provider: provider.id,
          displayName: typeof entry?.displayName === 'string' ? entry.displayName : provider.id,
          action: callbackUrl,
          state,
          fields: Object.entries(fields).map(([name, field]) => ({
            name,
            label: field.label,
            secret: field.secret,
          })),
        },
        cookie,
      };
    }
    return { authorizationUrl: started.authorizationUrl, cookie };
  }

  /**
   * api_key / basic, for the platform team (the connections function, IAM only): checks the
   * credentials as the hosted form would (and with the API, when the entry verifies) and stores
   * them. The answer never carries them.
   */
  async storeCredentials(request: {
    provider: string;
    connectionId: string;
    credentials: Record<string, string>;
  }): Promise<Connection> {
    const provider = getProvider(this.deps.providers, request.provider);
    const { kind } = provider;
    if (kind.variant !== 'provided-credentials') {
      throw new InvalidRequestError(
        `Provider "${provider.id}" does not take supplied credentials (it is ${kind.kind}).`,
      );
    }
    const tokens = await kind.accept(provider.context, request.credentials);
    const connection = await this.storeConsentedTokens(provider, request.connectionId, tokens);
    this.deps.logger.info('credentials stored', {
      provider: provider.id,
      connectionId: request.connectionId,
    });
    return connection;
  }

  /**
   * How long a start holds the session: longer than its provider call (one attempt, starts are
   * not retried) and the secret read before it. A start that dies frees the link after this.
   */
  private sessionClaimMs(providerId: string): number {
    const timeoutMs =
      this.deps.config.providers[providerId]?.timeoutMs ?? defaultHttpOptions.timeoutMs;
    return 2 * timeoutMs + 5_000;
  }

  /**
   * The callback route. Refusals before the flow is consumed throw ConnectFlowError (nothing is
   * stored); once consumed, the outcome (connected, or the provider's or person's refusal) is
   * returned for the route to redirect to `returnTo` or show.
   */
  async completeFlow(
    providerId: string,
    params: CallbackParams,
    cookies: Record<string, string | undefined>,
    /** The posted form (api_key / basic): the credentials and our state, never in the URL. */
    submitted?: Record<string, string>,
  ): Promise<FlowOutcome> {
    const provider = this.flowProvider(providerId);
    const credentialsForm = provider.kind.variant === 'provided-credentials';
    if (credentialsForm !== (submitted !== undefined)) {
      throw new ConnectFlowError(
        credentialsForm
          ? 'Submit the form of this connection attempt; credentials never come in a URL.'
          : 'This connection attempt comes back from the provider, not from a form.',
      );
    }
    // Every kind's callback carries our state: OAuth 2.0 echoes it; the others put it in the
    // callback URL they hand the provider, so even a denial without the provider's own handle
    // (an OAuth 1.0a oauth_problem alone) finds its flow. The credentials form posts it.
    const handle = submitted ? submitted.state : params.state;
    if (!handle) {
      throw new ConnectFlowError('The provider sent this browser back without the flow state.');
    }
    const handleHash = flowHandleHash(provider.id, handle);
    const flow = await this.deps.flows.getFlow(handleHash);
    if (!flow || flow.provider !== provider.id) {
      throw new ConnectFlowError('This connection attempt is unknown or was already completed.');
    }
    const cookieName = flowCookieName(handleHash);
    if (flow.expiresAt <= this.deps.now()) {
      await this.deps.flows.consumeFlow(handleHash);
      throw new ConnectFlowError('This connection attempt expired; start again.');
    }
    const browserToken = cookies[cookieName];
    if (!browserToken || !sameHash(hashOf(browserToken), flow.browserHash)) {
      throw new ConnectFlowError(
        'This browser did not start this connection attempt (its cookie is missing or does not match).',
      );
    }
    // A malformed callback (a parameter missing, a wrong issuer) must not burn the flow.
    // (The credentials form's values are checked by the kind once the flow is consumed.)
    if (provider.kind.variant !== 'provided-credentials') {
      const check = provider.kind.checkCallback(provider.context, params);
      if (!check.ok) throw new ConnectFlowError(check.message);
    }
    if (!(await this.deps.flows.consumeFlow(handleHash))) {
      throw new ConnectFlowError('This connection attempt is unknown or was already completed.');
    }

    const base = {
      provider: provider.id,
      connectionId: flow.connectionId,
      ...(flow.returnTo ? { returnTo: flow.returnTo } : {}),
      cookieName,
    };
    try {
      const { kind } = provider;
      let tokens: TokenSet;
      if (kind.variant === 'provided-credentials') {
        const { state: _state, ...credentials } = submitted ?? {};
        tokens = await kind.accept(provider.context, credentials);
      } else {
        tokens = await kind.completeConsent(provider.context, {
          params,
          callbackUrl: flow.callbackUrl,
          state: flow.state,
          flowSecrets: flow.flowSecrets,
          ...(flow.connectionParams ? { connectionParams: flow.connectionParams } : {}),
        });
      }
      await this.storeConsentedTokens(provider, flow.connectionId, tokens);
      this.deps.logger.info('connection connected', {
        provider: provider.id,
        connectionId: flow.connectionId,
      });
      return { ok: true, ...base };
    } catch (error) {
      const publicError = toPublicError(error);
      // A refusal (the person, the provider) is a warning; anything else is ours to fix.
      const log = isRefusal(error) ? this.deps.logger.warn : this.deps.logger.error;
      log.call(this.deps.logger, 'connect flow failed', {
        provider: provider.id,
        connectionId: flow.connectionId,
        code: publicError.code,
        reason: describeError(error), // the full chain for operators; the browser gets publicError
      });
      return { ok: false, ...base, error: publicError };
    }
  }

  /** New connection, or fresh consent for an existing one (reconnect clears needs_reauth). */
  private async storeConsentedTokens(
    provider: ResolvedProvider,
    connectionId: string,
    tokens: TokenSet,
  ): Promise<Connection> {
    const dueAt = nextDueAt(provider, tokens);
    for (let attempt = 1; ; attempt += 1) {
      const now = this.deps.now();
      const existing = await this.currentForReplace(provider.id, connectionId, now);
      try {
        const connection = existing
          ? await this.deps.store.saveTokens(existing, tokens, now, {
              ...(dueAt !== undefined ? { dueAt } : {}),
            })
          : await this.deps.store.create(provider.id, connectionId, tokens, now, dueAt);
        await publishSafely(this.deps.events, this.deps.logger, {
          type: 'Connection Created',
          provider: provider.id,
          connectionId,
          status: connection.status,
          at: now,
        });
        return connection;
      } catch (error) {
        // A refresh or another flow wrote meanwhile: these tokens are newer consent; write again.
        if (!(error instanceof VersionConflictError) || attempt >= STORE_ATTEMPTS) throw error;
      }
    }
  }

  /**
   * The connection to write the new consent over. Tokens that cannot be decrypted (an item
   * restored under another key, say) are replaced by this consent: the write goes over them at
   * their version, read without decrypting.
   */
  private async currentForReplace(
    provider: string,
    connectionId: string,
    now: number,
  ): Promise<Connection | undefined> {
    try {
      return await this.deps.store.get(provider, connectionId);
    } catch (error) {
      if (!(error instanceof BrokerError && error.code === 'internal_error')) throw error;
      const version = await this.deps.directory.versionOf(provider, connectionId);
      if (version === undefined) return undefined;
      this.deps.logger.warn('replacing unreadable tokens with a new consent', {
        provider,
        connectionId,
      });
      const unreadable = { accessToken: '', tokenType: '' };
      return {
        provider,
        connectionId,
        version,
        status: 'active',
        tokens: unreadable,
        createdAt: now,
        updatedAt: now,
        refreshFailures: 0,
      };
    }
  }

  private flowProvider(providerId: string): FlowProvider {
    const provider = getProvider(this.deps.providers, providerId);
    const { kind } = provider;
    if (!hasConsentFlow(kind) && kind.variant !== 'provided-credentials') {
      throw new InvalidRequestError(
        `Provider "${provider.id}" uses client credentials; it has no connect flow.`,
      );
    }
    return { ...provider, kind };
  }

  callbackUrl(providerId: string): string {
    return `${this.publicBaseUrl()}/callback/${encodeURIComponent(providerId)}`;
  }

  private publicBaseUrl(): string {
    const base = this.deps.config.publicBaseUrl;
    if (!base) {
      throw new BrokerError(
        'internal_error',
        'publicBaseUrl is not configured (BROKER_PUBLIC_BASE_URL or broker.config.json).',
      );
    }
    return base.replace(/\/+$/, '');
  }
}

/**
 * The values a connect session gives for the entry's connectionParams: every declared one, each
 * matching its pattern, nothing undeclared. They fill URL templates ({subdomain}), so a value
 * that could change a URL's host or path (a "/", an "@") is refused unless the pattern allows it.
 */
function checkConnectionParams(
  providerId: string,
  declared: Record<string, { description: string; pattern?: string }> | undefined,
  given: Record<string, string> | undefined,
): Record<string, string> | undefined {
  const names = Object.keys(declared ?? {});
  for (const name of Object.keys(given ?? {})) {
    if (!names.includes(name)) {
      throw new InvalidRequestError(
        `Invalid request: params.${name}: ${providerId} takes no such parameter${names.length ? ` (it takes ${names.join(', ')})` : ''}.`,
      );
    }
  }
  if (names.length === 0) return undefined;
  const values: Record<string, string> = {};
  for (const name of names) {
    const value = given?.[name];
    if (value === undefined) {
      throw new InvalidRequestError(
        `Invalid request: params.${name}: required for ${providerId} (${declared![name]!.description}).`,
      );
    }
    const pattern = declared![name]!.pattern;
    const fits = pattern ? new RegExp(pattern).test(value) : /^[A-Za-z0-9._-]+$/.test(value);
    if (!fits) {
      throw new InvalidRequestError(
        `Invalid request: params.${name}: does not match ${pattern ?? 'letters, digits, ".", "_" and "-"'}.`,
      );
    }
    values[name] = value;
  }
  return values;
}

/** A provider whose kind has a browser flow: consent at the provider, or our credentials form. */
type FlowProvider = ResolvedProvider & {
  kind: ConsentProtocol<never> | ProvidedCredentialsProtocol<never>;
};

/** Writes of a consented connection that lose to concurrent writers before giving up. */
const STORE_ATTEMPTS = 5;

/**
 * The flow's key: the handle's hash, scoped to the provider, so a handle a provider chose (an
 * OAuth 1.0a request token) can never meet another provider's flow.
 */
function flowHandleHash(provider: string, handle: string): string {
  return hashOf(`${provider}\n${handle}`);
}

/** Why this session cannot be claimed now, as the refusal the browser sees; undefined if it can. */
function sessionRefusal(
  session: ConnectSession | undefined,
  providerId: string,
  now: number,
): ConnectFlowError | undefined {
  if (!session || session.provider !== providerId || session.expiresAt <= now) {
    return new ConnectFlowError('This connect link is unknown, already used or expired.');
  }
  if ((session.claimExpiresAt ?? 0) > now) {
    return new ConnectFlowError(
      'This connect link is already being used in another request; open it once.',
    );
  }
  return undefined;
}

/** Per-flow cookie name (from the flow's hash), so two flows in one browser do not collide. */
export function flowCookieName(handleHash: string): string {
  return `otb_flow_${handleHash.slice(0, 16)}`;
}

function sameHash(a: string, b: string): boolean {
  return a.length === b.length && timingSafeEqual(Buffer.from(a), Buffer.from(b));
}

function isPlainHttpLocalhost(url: string): boolean {
  const { protocol, hostname } = new URL(url);
  return (
    protocol === 'http:' &&
    (hostname === 'localhost' || hostname === '127.0.0.1' || hostname === '[::1]')
  );
}
