import { QuickoSandbox } from './quicko-sandbox.ts';
import { QuidkeySandbox } from './quidkey-sandbox.ts';
import { QuiptSandbox } from './quipt-sandbox.ts';
import { QuiqupSandbox } from './quiqup-sandbox.ts';

export interface SandboxWiring {
  /**
   * client_id → client_secret of the configured providers of this sandbox's catalog entry (from
   * the secrets file).
   */
  clients: (sandbox: string) => Map<string, string>;
  signingKey: Buffer;
  now: () => number;
}

/** Every sandbox provider the offline runtime serves, under /sandbox/<catalog id>. */
export function createSandboxes(wiring: SandboxWiring) {
  const { clients, signingKey, now } = wiring;
  return {
    quiqup: new QuiqupSandbox('quiqup', clients('quiqup'), signingKey, now),
    quidkey: new QuidkeySandbox('quidkey', clients('quidkey'), signingKey, now),
    quicko: new QuickoSandbox('quicko', clients('quicko'), signingKey, now),
    quipt: new QuiptSandbox('quipt', clients('quipt'), signingKey, now),
  };
}

export type Sandboxes = ReturnType<typeof createSandboxes>;
