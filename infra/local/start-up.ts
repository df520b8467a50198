import type { Server } from 'node:http';
import { Level } from 'level';
import type { Broker } from '../../shared/broker.ts';
import { ConfigError, ProviderMisconfiguredError } from '../../shared/errors.ts';

/**
 * A start-up failure of `npm start` whose message is one line saying what to do. `npm start`
 * prints it without a stack: it is the user's set-up, not a bug.
 */
export class StartUpError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'StartUpError';
  }
}

/**
 * dynalite opens its store lazily and, when another process holds the store's lock, crashes at
 * the first request with `Database is closed`. Opening it once here (and closing it again) turns
 * that into a message, before anything starts.
 */
export async function assertStoreNotInUse(path: string): Promise<void> {
  const db = new Level(path);
  try {
    await db.open();
  } catch (error) {
    const cause = (error as { cause?: { code?: string } }).cause;
    if (cause?.code === 'LEVEL_LOCKED') {
      throw new StartUpError(
        `The local store ${path} is in use by another npm start of this checkout: stop that one first (Ctrl-C in its terminal), then start again.`,
        { cause: error },
      );
    }
    throw error;
  }
  await db.close();
}

/** `server.listen`, with a busy or forbidden port told as what to do instead of an `error` event. */
export async function listen(server: Server, port: number, host: string): Promise<void> {
  await new Promise<void>((done, fail) => {
    const refuse = (error: NodeJS.ErrnoException) => {
      const where = `${host}:${port}`;
      if (error.code === 'EADDRINUSE') {
        fail(
          new StartUpError(
            `Port ${port} is already in use (${where}; another npm start?): stop what holds it, or start on another port with PORT=<port> npm start.`,
            { cause: error },
          ),
        );
      } else if (error.code === 'EACCES' || error.code === 'EADDRNOTAVAIL') {
        fail(
          new StartUpError(
            `Cannot listen on ${where} (${error.code}): choose another PORT, or a BROKER_LISTEN_HOST of this machine.`,
            { cause: error },
          ),
        );
      } else {
        fail(error);
      }
    };
    server.once('error', refuse);
    server.listen(port, host, () => {
      server.off('error', refuse);
      done();
    });
  });
}

/** The one line `npm start` prints for a failed start: what went wrong and what to do. */
export function startUpFailureLine(error: unknown): string {
  if (error instanceof StartUpError) return `npm start: ${error.message}`;
  // Configuration errors name the file and the key.
  if (error instanceof ConfigError)
    return `npm start: ${error.message.replace(/\.?$/, '.')} Fix it and start again.`;
  const { name, message } = error instanceof Error ? error : new Error(String(error));
  return `npm start failed unexpectedly: ${name}: ${message}`;
}

/** Per configured provider, whether its secret is usable: undefined, or the line saying why not. */
export async function secretProblems(broker: Broker): Promise<Map<string, string | undefined>> {
  const problems = new Map<string, string | undefined>();
  for (const provider of broker.providers.values()) {
    try {
      await provider.context.secret();
      problems.set(provider.id, undefined);
    } catch (error) {
      if (!(error instanceof ProviderMisconfiguredError)) throw error;
      // The cause says where the secret lives ("see the entry "x" of /path"): never its value.
      const where = error.cause instanceof Error ? ` (${error.cause.message})` : '';
      problems.set(provider.id, `${error.message.replace(/\.$/, '')}${where}.`);
    }
  }
  return problems;
}
