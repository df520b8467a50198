/**
 * dynalite in a process of its own, for the workloads whose figures are about the broker's own
 * CPU (the refresher, the process stampede): in deployment DynamoDB is another service, and an
 * embedded store would charge its work to the broker's event loop. Forked by `startBenchRuntime`
 * ({ storeProcess: true }); it reports `{ port }` once listening and, when asked
 * (`{ type: 'cpu' }`), its CPU time so far (`{ cpuMs }`).
 */
import dynalite from 'dynalite';
import type { AddressInfo } from 'node:net';

const store = dynalite({ createTableMs: 0, deleteTableMs: 0, updateTableMs: 0 });
store.listen(0, '127.0.0.1', () => {
  process.send!({ port: (store.address() as AddressInfo).port });
});
process.on('message', (message: { type: string }) => {
  if (message.type !== 'cpu') return;
  const { user, system } = process.cpuUsage();
  process.send!({ cpuMs: (user + system) / 1000 });
});
process.on('disconnect', () => process.exit(0));
