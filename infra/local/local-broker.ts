import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join, resolve } from 'node:path';
import {
  CreateTableCommand,
  DescribeTableCommand,
  DynamoDBClient,
  ResourceInUseException,
  waitUntilTableExists,
} from '@aws-sdk/client-dynamodb';
import type { APIGatewayProxyResultV2 } from 'aws-lambda';
import dynalite from 'dynalite';
import { setBroker } from '../../shared/broker-core.ts';
import { createBroker, type Broker } from '../../shared/broker.ts';
import { refresherTimeoutSeconds } from '../../shared/refresher.ts';
import { loadConfig, type BrokerConfig } from '../../shared/config.ts';
import { LocalKeyManager } from '../../shared/crypto/local-key-manager.ts';
import { ConfigError } from '../../shared/errors.ts';
import { LogEventPublisher } from '../../shared/events.ts';
import { logger } from '../../shared/logger.ts';
import { SecretsFileBackend } from '../../shared/secrets.ts';
import { protocolOf, type ProtocolRegistry } from '../../shared/providers/protocols.ts';
import { createTableInput } from '../../shared/store/table.ts';
import { brokerFunctions, brokerFunctionNames, functionRoutes } from '../functions.ts';
import { escapeHtml } from '../../shared/http/responses.ts';
import {
  isWellEncodedPath,
  matchRoute,
  sendHttpApiResult,
  toHttpApiEvent,
  type HttpApiRoute,
} from './http-api-events.ts';
import { lambdaContext, type LocalHandler } from './lambda-context.ts';
import { invokeFunction, matchInvokePath } from './lambda-invoke-api.ts';
import { sendLocalErrorPage, serveLandingPage } from './landing-page.ts';
import { FileEventPublisher } from './local-events.ts';
import { createSandboxes, type Sandboxes } from './sandbox/index.ts';
import { assertStoreNotInUse, listen, StartUpError } from './start-up.ts';

export interface LocalBrokerOptions {
  /** Port to listen on; 0 picks a free one. Default 3000. */
  port?: number;
  /** Where the store, the local key and the secrets file live. Default `.broker`. */
  dataDir?: string;
  /** Keep the store on disk under dataDir (default) or in memory (tests). */
  persist?: boolean;
  /** Default: loadConfig() (broker.config.json or BROKER_CONFIG). */
  config?: BrokerConfig;
  /** The provider kinds the config names (default: the shipped ones; tests add their own). */
  kinds?: ProtocolRegistry;
  /** One clock for the broker and the sandboxes, so tests can move time. */
  now?: () => number;
  tableName?: string;
  /** Provider call timeout and retry settings (tests shorten them). */
  http?: Parameters<typeof createBroker>[0]['http'];
  /** Run the refresher this often (seconds); 0 = only when invoked. Default 60. */
  refresherIntervalSeconds?: number;
  /**
   * The secrets file. Default: `BROKER_SECRETS_FILE`, read as it is (yours: never written), else
   * `<dataDir>/secrets.json`, filled with sandbox credentials on first run.
   */
  secretsFile?: string;
  /**
   * A DynamoDB-compatible endpoint to use instead of the embedded store (the bench runs dynalite
   * in a process of its own, as DynamoDB is another service in deployment). The table is created
   * there if missing; `persist` does not apply, and close() leaves that store running.
   */
  storeEndpoint?: string;
}

export interface LocalBroker {
  url: string;
  broker: Broker;
  /** The secrets file in use. */
  secretsFile: string;
  sandboxes: Sandboxes;
  functions: Record<string, LocalHandler>;
  routes: HttpApiRoute[];
  dynamo: DynamoDBClient;
  tableName: string;
  close(): Promise<void>;
}

/**
 * The Lambda functions the offline runtime serves, by function name: every handler of the
 * function catalog (infra/functions.ts), imported from its entry as the stack bundles it.
 */
export async function loadLocalFunctions(): Promise<Record<string, LocalHandler>> {
  const handlers = await Promise.all(
    brokerFunctionNames.map(async (name) => {
      const module = (await import(
        new URL(`../../${brokerFunctions[name].entry}`, import.meta.url).href
      )) as { handler: LocalHandler };
      return [name, module.handler] as const;
    }),
  );
  return Object.fromEntries(handlers);
}

/** The API Gateway routes the offline runtime serves: the same as the stack's HTTP API. */
export const localRoutes: HttpApiRoute[] = functionRoutes();

const MAX_BODY_BYTES = 6 * 1024 * 1024; // Lambda's synchronous payload limit

/**
 * The whole broker on one machine: embedded DynamoDB (dynalite), the local key, the secrets file,
 * the sandbox providers, the Lambda Invoke API and the HTTP API routes, on one HTTP server.
 */
export async function startLocalBroker(options: LocalBrokerOptions = {}): Promise<LocalBroker> {
  const dataDir = resolve(options.dataDir ?? '.broker');
  mkdirSync(dataDir, { recursive: true });
  const config = options.config ?? loadConfig();
  const now = options.now ?? Date.now;
  const tableName = options.tableName ?? 'oauth-token-broker';

  const namedSecretsFile = options.secretsFile ?? process.env.BROKER_SECRETS_FILE;
  const secretsPath = namedSecretsFile ? resolve(namedSecretsFile) : join(dataDir, 'secrets.json');
  const secrets = namedSecretsFile
    ? readSecretsFile(secretsPath)
    : ensureSandboxSecrets(secretsPath, config, options.kinds);
  const signingKey = readOrCreateKey(join(dataDir, 'sandbox-signing.key'));
  const sandboxes = createSandboxes({
    clients: (sandbox) => sandboxClients(secrets, config, sandbox, options.kinds),
    signingKey,
    now,
  });
  applySandboxLifetimes(sandboxes);

  // The embedded store, unless the caller runs one of its own.
  let store: ReturnType<typeof dynalite> | undefined;
  if (!options.storeEndpoint) {
    if (options.persist !== false) await assertStoreNotInUse(join(dataDir, 'dynalite'));
    store = dynalite({
      ...(options.persist === false ? {} : { path: join(dataDir, 'dynalite') }),
      createTableMs: 0,
      deleteTableMs: 0,
      updateTableMs: 0,
    });
    await new Promise<void>((done) => store!.listen(0, '127.0.0.1', done));
  }
  const closeStore = () =>
    new Promise<void>((done) => (store ? store.close(() => done()) : done()));
  const dynamoEndpoint =
    options.storeEndpoint ?? `http://127.0.0.1:${(store!.address() as AddressInfo).port}`;
  const dynamo = new DynamoDBClient({
    endpoint: dynamoEndpoint,
    region: 'local',
    credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
  });
  try {
    await dynamo.send(new CreateTableCommand(createTableInput(tableName)));
  } catch (error) {
    if (!(error instanceof ResourceInUseException)) throw error;
  }
  // dynalite marks a new table ACTIVE a tick later; writes before that would be refused.
  await waitUntilTableExists(
    { client: dynamo, maxWaitTime: 10, minDelay: 0.05, maxDelay: 0.2 },
    { TableName: tableName },
  );
  // A table kept on disk by an older version lacks the indexes added since (the refresher's `due`
  // index, say), and dynalite cannot add one to an existing table: say so now, not at a Query.
  const { Table } = await dynamo.send(new DescribeTableCommand({ TableName: tableName }));
  const present = new Set(Table?.GlobalSecondaryIndexes?.map((index) => index.IndexName));
  const missing = createTableInput(tableName)
    .GlobalSecondaryIndexes!.map((index) => index.IndexName!)
    .filter((name) => !present.has(name));
  if (missing.length > 0) {
    dynamo.destroy();
    await closeStore();
    const storeDir = join(dataDir, 'dynalite');
    throw new StartUpError(
      `The local table "${tableName}" in ${storeDir} was created by an older version of the broker and lacks the index(es) ${missing.join(', ')}. Delete ${storeDir} (the local connections go with it) and start again.`,
    );
  }

  const functions = await loadLocalFunctions();
  const refresherHandler = functions.refresher!;
  // The refresher's timeout as deployed. The Invoke API's default 30 s context lies inside its stop
  // margin, so a run invoked by hand would start no renewal at all.
  const refresherTimeoutMs = refresherTimeoutSeconds(config) * 1000;
  functions.refresher = (event) =>
    refresherHandler(event, lambdaContext('refresher', refresherTimeoutMs));
  const backgroundRuns = new Set<Promise<unknown>>();
  const trackBackground = (run: Promise<unknown>) => {
    backgroundRuns.add(run);
    void run.finally(() => backgroundRuns.delete(run));
  };
  const routes = [...localRoutes];
  const server = createServer((req, res) => {
    route(req, res).catch((error: unknown) => {
      console.error(
        'local runtime: request failed:',
        (error as Error).name,
        (error as Error).message,
      );
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
      res.end('internal error');
    });
  });
  // Loopback only (BROKER_LISTEN_HOST to widen): the Invoke API hands out tokens unauthenticated.
  const host = process.env.BROKER_LISTEN_HOST ?? '127.0.0.1';
  try {
    await listen(server, options.port ?? 3000, host);
  } catch (error) {
    dynamo.destroy();
    await closeStore();
    throw error;
  }
  const port = (server.address() as AddressInfo).port;
  const url = `http://localhost:${port}`;
  // DNS rebinding: a page on evil.example whose name now resolves to 127.0.0.1 reaches this
  // server as same-origin, but its requests still say `Host: evil.example:PORT`.
  const ownHosts = new Set([`localhost:${port}`, `127.0.0.1:${port}`, `[::1]:${port}`]);
  const publicOrigins = new Map<string, string>();
  if (config.publicBaseUrl) {
    const publicUrl = new URL(config.publicBaseUrl);
    ownHosts.add(publicUrl.host);
    publicOrigins.set(publicUrl.host, publicUrl.origin);
  }
  // Kept across restarts with the store; in memory when the store is.
  const events =
    options.persist === false
      ? new LogEventPublisher(logger)
      : new FileEventPublisher(logger, join(dataDir, 'events.json'));

  const broker = createBroker({
    config: {
      ...config,
      publicBaseUrl: config.publicBaseUrl ?? url,
      // The landing page's own Connect buttons come back to it.
      allowedReturnTo: [...config.allowedReturnTo, `${url}/`],
    },
    dynamo,
    tableName,
    keys: LocalKeyManager.fromEnvironmentOrFile(process.env, join(dataDir, 'local-master.key')),
    secrets: new SecretsFileBackend(secretsPath),
    events,
    now,
    sandboxBaseUrl: `${url}/sandbox`,
    ...(options.kinds ? { kinds: options.kinds } : {}),
    ...(options.http ? { http: options.http } : {}),
  });
  // The handlers are the Lambda handlers, unchanged: they find this broker as their container's.
  setBroker(broker);

  // The schedule, as EventBridge would run it in AWS; a run still going is not started twice.
  const intervalSeconds = options.refresherIntervalSeconds ?? 60;
  let refresherRunning = false;
  const schedule =
    intervalSeconds > 0
      ? setInterval(() => {
          if (refresherRunning) return;
          refresherRunning = true;
          const run = functions.refresher!({}, lambdaContext('refresher', refresherTimeoutMs))
            .catch((error: unknown) =>
              console.error('scheduled refresher run failed:', (error as Error).name),
            )
            .finally(() => (refresherRunning = false));
          trackBackground(run);
        }, intervalSeconds * 1000)
      : undefined;
  schedule?.unref();

  async function route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const socket = req.socket;
    const body = await readBody(req);
    if (body === undefined) {
      // The rest of the body is never read: close the connection, or the next request on it
      // would be read from the middle of this body and hang.
      res.on('finish', () => socket.destroy());
      res.writeHead(413, { connection: 'close' }).end();
      return;
    }
    // Origin-form targets only (`/path?query`). An absolute-form one (`GET http://evil/`) is a
    // proxy request, and would make `requestUrl` — and the links and redirects built from it —
    // point at whatever host it names.
    const target = req.url ?? '/';
    if (!target.startsWith('/')) {
      res.writeHead(400, { 'content-type': 'text/plain', connection: 'close' });
      res.end('Bad request: this server takes only origin-form request targets (a path).\n');
      return;
    }
    // Concatenated, not resolved: `//evil/x` is a path here, not a host.
    const requestUrl = new URL(`${url}${target}`);
    // After the body is read, like every answer here: one left unread would be taken for the
    // next request on the connection.
    if (!isWellEncodedPath(requestUrl.pathname)) {
      res
        .writeHead(400, { 'content-type': 'application/json' })
        .end(JSON.stringify({ message: 'Bad Request: the path is not valid percent-encoding.' }));
      return;
    }
    const functionName = matchInvokePath(requestUrl.pathname);
    if (functionName && req.method === 'POST') {
      // The SDK and the CLI never send Origin; a browser does. Any web page could otherwise POST
      // to this unauthenticated Invoke API (a token fetch, a disconnect) from the developer's
      // browser.
      if (req.headers.origin !== undefined) {
        res.writeHead(403, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ message: 'The Invoke API refuses browser requests.' }));
        return;
      }
      const type = req.headers['x-amz-invocation-type'];
      return invokeFunction(
        functions,
        functionName,
        body,
        Array.isArray(type) ? type[0] : type,
        res,
        trackBackground,
      );
    }
    // The Invoke API (above) is exempt: it refuses browsers by their Origin header, and a service
    // may reach it by any name (BROKER_LISTEN_HOST widened, from a container).
    const hostHeader = req.headers.host?.toLowerCase();
    if (!hostHeader || !ownHosts.has(hostHeader)) {
      sendLocalErrorPage(
        res,
        421,
        'Wrong host',
        `This broker answers browsers only as ${[...ownHosts].join(', ')} (a protection against DNS rebinding). Set publicBaseUrl to serve another host name.`,
        `${url}/`,
      );
      return;
    }
    const sandbox = /^\/sandbox\/([a-z]+)(\/.*)$/.exec(requestUrl.pathname);
    if (sandbox) {
      const provider = Object.hasOwn(sandboxes, sandbox[1]!)
        ? sandboxes[sandbox[1] as keyof typeof sandboxes]
        : undefined;
      if (provider) {
        return provider.handle(
          {
            method: req.method ?? 'GET',
            path: sandbox[2]!,
            query: requestUrl.searchParams,
            baseUrl: `${url}/sandbox/${sandbox[1]}`,
            headers: req.headers,
            body,
          },
          res,
        );
      }
    }
    const landing = { broker, now, events: () => events.recent };
    const landingRequest = {
      method: req.method ?? 'GET',
      url: requestUrl,
      body,
      origin: req.headers.origin,
      // Where the browser has this page: any of the runtime's own names.
      pageOrigin: publicOrigins.get(hostHeader) ?? `http://${hostHeader}`,
    };
    if (await serveLandingPage(landing, landingRequest, res)) return;
    if (requestUrl.pathname === '/local/events') {
      res
        .writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' })
        .end(JSON.stringify(events.recent, null, 2));
      return;
    }
    if (requestUrl.pathname === '/sandbox/_stats') {
      const stats = Object.fromEntries(
        Object.entries(sandboxes).map(([kind, s]) => [kind, Object.fromEntries(s.calls)]),
      );
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(stats));
      return;
    }
    for (const candidate of routes) {
      const params =
        candidate.method === req.method
          ? matchRoute(candidate.path, requestUrl.pathname)
          : undefined;
      const handler = params && functions[candidate.functionName];
      if (params && handler) {
        const event = toHttpApiEvent(req, requestUrl, body, candidate, params);
        const result = await handler(event, lambdaContext(candidate.functionName));
        return sendHttpApiResult(res, withLinkHome(result as never, `${url}/`));
      }
    }
    if (req.headers.accept?.includes('text/html')) {
      sendLocalErrorPage(res, 404, 'Not found', 'Nothing is served at this address.');
      return;
    }
    res
      .writeHead(404, { 'content-type': 'application/json' })
      .end(JSON.stringify({ message: 'Not Found' }));
  }

  return {
    url,
    broker,
    secretsFile: secretsPath,
    sandboxes,
    functions,
    routes,
    dynamo,
    tableName,
    async close() {
      clearInterval(schedule);
      // Async invocations may still be talking to the sandbox on this server and writing to the
      // store: let them finish before either goes away.
      await Promise.allSettled([...backgroundRuns]);
      server.closeAllConnections();
      await new Promise<void>((done) => server.close(() => done()));
      setBroker(undefined);
      dynamo.destroy();
      await closeStore();
    },
  };
}

/**
 * The connect routes' error pages lead nowhere in AWS (the broker has no page of its own there);
 * offline they get a link back to the landing page.
 */
function withLinkHome(result: APIGatewayProxyResultV2, home: string): APIGatewayProxyResultV2 {
  if (typeof result !== 'object' || !result.body || (result.statusCode ?? 200) < 400) return result;
  const type = String(result.headers?.['content-type'] ?? '');
  if (!type.startsWith('text/html')) return result;
  return {
    ...result,
    body: result.body.replace(
      '</body>',
      `<p><a href="${escapeHtml(home)}">← Back to the local broker</a></p></body>`,
    ),
  };
}

async function readBody(req: IncomingMessage): Promise<string | undefined> {
  if (Number(req.headers['content-length']) > MAX_BODY_BYTES) return undefined;
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY_BYTES) return undefined;
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}

type SecretsFile = Record<string, Record<string, string>>;

/**
 * The local secrets file, created on first run with fresh credentials for every provider that
 * points at the sandbox, so a first `npm start` works with no set-up. Existing entries are kept.
 */
function ensureSandboxSecrets(
  path: string,
  config: BrokerConfig,
  kinds: ProtocolRegistry | undefined,
): SecretsFile {
  const secrets = readSecretsFile(path);
  let changed = false;
  for (const [id, provider] of Object.entries(config.providers)) {
    if (provider.environment === 'sandbox' && !secrets[id]) {
      // The kind's fields: an id-like first one (client_id, api_key, consumer_key), secrets after.
      const [idField, ...secretFields] = protocolOf(provider, kinds).secretFields;
      if (idField === undefined) continue; // api_key / basic: no provider secret
      secrets[id] = {
        [idField!]: `sandbox-${id}-${randomBytes(4).toString('hex')}`,
        ...Object.fromEntries(
          secretFields.map((field) => [field, randomBytes(24).toString('base64url')]),
        ),
      };
      changed = true;
    }
  }
  if (changed) writeFileSync(path, JSON.stringify(secrets, null, 2) + '\n', { mode: 0o600 });
  return secrets;
}

/** The secrets file's entries ({} when there is none); never its content in an error. */
function readSecretsFile(path: string): SecretsFile {
  if (!existsSync(path)) return {};
  try {
    const secrets: unknown = JSON.parse(readFileSync(path, 'utf8'));
    if (typeof secrets === 'object' && secrets !== null && !Array.isArray(secrets)) {
      return secrets as SecretsFile;
    }
  } catch {
    // said below, without the text (it holds secrets)
  }
  throw new ConfigError(
    `The secrets file ${path} is not a JSON object of provider entries ({"<providerId>": {…}}): fix it and start again.`,
  );
}

function sandboxClients(
  secrets: SecretsFile,
  config: BrokerConfig,
  sandbox: string,
  kinds: ProtocolRegistry | undefined,
): Map<string, string> {
  const clients = new Map<string, string>();
  for (const [id, provider] of Object.entries(config.providers)) {
    // A sandbox serves the providers of its catalog entry (environment sandbox, /sandbox/<id>).
    if ((provider.catalog ?? provider.kind) !== sandbox) continue;
    // Each kind's first two secret fields: client_id/client_secret, api_key/api_secret, …
    const [idField, secretField] = protocolOf(provider, kinds).secretFields;
    if (idField === undefined || secretField === undefined) continue;
    const clientId = secrets[id]?.[idField!];
    const clientSecret = secrets[id]?.[secretField!];
    if (clientId && clientSecret) clients.set(clientId, clientSecret);
  }
  return clients;
}

function readOrCreateKey(path: string): Buffer {
  if (!existsSync(path))
    writeFileSync(path, randomBytes(32).toString('base64') + '\n', { mode: 0o600 });
  return Buffer.from(readFileSync(path, 'utf8').trim(), 'base64');
}

/** Shorter sandbox lifetimes from the environment, to watch tokens expire and renew. */
function applySandboxLifetimes(sandboxes: LocalBroker['sandboxes']): void {
  const seconds = (name: string) => {
    const value = Number(process.env[name]);
    return Number.isInteger(value) && value > 0 ? value : undefined;
  };
  sandboxes.quiqup.accessTokenSeconds =
    seconds('SANDBOX_QUIQUP_TOKEN_SECONDS') ?? sandboxes.quiqup.accessTokenSeconds;
  sandboxes.quidkey.accessTokenSeconds =
    seconds('SANDBOX_QUIDKEY_TOKEN_SECONDS') ?? sandboxes.quidkey.accessTokenSeconds;
  sandboxes.quidkey.refreshTokenSeconds =
    seconds('SANDBOX_QUIDKEY_REFRESH_SECONDS') ?? sandboxes.quidkey.refreshTokenSeconds;
  sandboxes.quicko.accessTokenSeconds =
    seconds('SANDBOX_QUICKO_TOKEN_SECONDS') ?? sandboxes.quicko.accessTokenSeconds;
}
