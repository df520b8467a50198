import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { LogEventPublisher, type LifecycleEvent } from '../../shared/events.ts';
import type { BrokerLogger } from '../../shared/logger.ts';

/**
 * Offline lifecycle events that outlive a restart: to the log, as LogEventPublisher, and the
 * latest 100 kept in a JSON file under `.broker/` (`npm run reset` removes it), read back on start.
 * Events carry ids, status and reasons only, never a token, so the file holds nothing secret.
 */
export class FileEventPublisher extends LogEventPublisher {
  constructor(
    logger: BrokerLogger,
    private readonly path: string,
  ) {
    super(logger);
    this.recent.push(...readEvents(path, logger));
  }

  override async publish(event: LifecycleEvent): Promise<void> {
    await super.publish(event);
    // Whole file, written aside then renamed: a crash mid-write leaves the previous file intact.
    // A hundred short events: small enough to write synchronously, in publish order.
    writeFileSync(`${this.path}.tmp`, JSON.stringify(this.recent) + '\n');
    renameSync(`${this.path}.tmp`, this.path);
  }
}

function readEvents(path: string, logger: BrokerLogger): LifecycleEvent[] {
  if (!existsSync(path)) return [];
  try {
    const events: unknown = JSON.parse(readFileSync(path, 'utf8'));
    if (!Array.isArray(events)) throw new Error('not a JSON array');
    return (events as LifecycleEvent[])
      .filter((e) => typeof e?.type === 'string' && typeof e.at === 'number')
      .slice(0, 100);
  } catch (error) {
    // Only a record of what happened: start a new one rather than refuse to start.
    logger.warn('local lifecycle events unreadable; starting a new list', {
      path,
      error: (error as Error).message,
    });
    return [];
  }
}
