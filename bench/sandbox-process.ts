/**
 * The sandbox providers in a process of their own, for the refresher workload: in deployment the
 * provider is another service, and sandboxes served by the bench process would charge their HTTP
 * work to the refresher's event loop. An offline runtime over the bench's data folder (its
 * secrets file, so the same sandbox clients) and store; forked by `startBenchRuntime`
 * ({ sandboxProcess }). It reports `{ url }` once listening; asked `{ type: 'delay', ms }` it
 * delays every Quiqup call (`{ done }`), `{ type: 'count' }` its token calls so far
 * (`{ count }`), `{ type: 'cpu' }` its CPU time so far (`{ cpuMs }`).
 */
import './quiet-logs.ts'; // first: sets the log level before the broker's logger is built
import { startLocalBroker } from '../infra/local/local-broker.ts';
import { parseConfig } from '../shared/config.ts';

const env = (name: string): string => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};

const local = await startLocalBroker({
  port: 0,
  dataDir: env('SANDBOX_DATA_DIR'),
  persist: false,
  config: parseConfig(JSON.parse(env('SANDBOX_CONFIG'))),
  refresherIntervalSeconds: 0,
  storeEndpoint: env('SANDBOX_STORE_ENDPOINT'),
});
process.on('message', (message: { type: string; ms?: number }) => {
  if (message.type === 'delay') {
    local.sandboxes.quiqup.fault = { type: 'delay', ms: message.ms! };
    process.send!({ done: true });
  } else if (message.type === 'count') {
    process.send!({ count: local.sandboxes.quiqup.callCount('token') });
  } else if (message.type === 'cpu') {
    const { user, system } = process.cpuUsage();
    process.send!({ cpuMs: (user + system) / 1000 });
  }
});
process.on('disconnect', () => void local.close().finally(() => process.exit(0)));
process.send!({ url: local.url });
