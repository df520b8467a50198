/**
 * `npm run reset`: forgets the offline runtime's state, so the next `npm start` begins empty.
 *
 * Removes `.broker/dynalite` (the store: connections and their tokens, connect sessions and
 * flows) and `.broker/events.json` (the lifecycle events). Keeps `.broker/local-master.key`,
 * `.broker/sandbox-signing.key` and `.broker/secrets.json`: they hold no connection state, and the
 * secrets file may hold credentials you added for a real provider. `npm run reset -- --all`
 * removes the whole `.broker/` instead; the next `npm start` makes a new key and new sandbox
 * credentials. Refuses while an `npm start` of this checkout has the store open.
 */
import { existsSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { assertStoreNotInUse, StartUpError } from '../infra/local/start-up.ts';

const dataDir = resolve('.broker');
const storeDir = join(dataDir, 'dynalite');
const all = process.argv.includes('--all');

try {
  if (existsSync(storeDir)) await assertStoreNotInUse(storeDir);
} catch (error) {
  if (!(error instanceof StartUpError)) throw error;
  console.error(
    `${storeDir} is open in a running \`npm start\` of this checkout: stop it (Ctrl-C), then run \`npm run reset\` again.`,
  );
  process.exit(1);
}

const removed = all
  ? [dataDir]
  : [storeDir, join(dataDir, 'events.json'), join(dataDir, 'events.json.tmp')];
const present = removed.filter((path) => existsSync(path));
for (const path of present) rmSync(path, { recursive: true, force: true });
console.log(
  present.length === 0
    ? 'Nothing to reset: no local state.'
    : `Removed ${present.map((path) => path.slice(resolve('.').length + 1)).join(', ')}.` +
        (all
          ? ' The next `npm start` creates a new local key and new sandbox credentials.'
          : ' Kept the local key and secrets.json. The next `npm start` begins with no connections.'),
);
