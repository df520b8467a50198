import { PutEventsCommand, type EventBridgeClient } from '@aws-sdk/client-eventbridge';
import type { BrokerLogger } from './logger.ts';

export const eventSource = 'oauth-token-broker';

export type LifecycleEventType =
  | 'Connection Created'
  | 'Connection Refresh Failed'
  | 'Connection Needs Reauth'
  | 'Connection Deleted';

/** What an event says: ids, status and a reason. Never a token. */
export interface LifecycleEvent {
  type: LifecycleEventType;
  provider: string;
  connectionId: string;
  status: string;
  /** The broker error code and plain message, for failures. */
  code?: string;
  reason?: string;
  /** Epoch ms. */
  at: number;
}

/** The lifecycle-event port: EventBridge in AWS, the log (and the landing page) offline. */
export interface EventPublisher {
  publish(event: LifecycleEvent): Promise<void>;
}

/** EventBridge `PutEvents` with `source: "oauth-token-broker"` and the type as detail-type. */
export class EventBridgePublisher implements EventPublisher {
  constructor(
    private readonly client: EventBridgeClient,
    private readonly busName: string,
  ) {}

  async publish(event: LifecycleEvent): Promise<void> {
    const { type, at, ...detail } = event;
    const out = await this.client.send(
      new PutEventsCommand({
        Entries: [
          {
            Source: eventSource,
            DetailType: type,
            Detail: JSON.stringify({ ...detail, at: new Date(at).toISOString() }),
            EventBusName: this.busName,
            Time: new Date(at),
          },
        ],
      }),
    );
    if (out.FailedEntryCount) {
      throw new Error(`EventBridge refused the event: ${out.Entries?.[0]?.ErrorCode ?? 'unknown'}`);
    }
  }
}

/** Offline: events go to the log and are kept (the latest 100) for the landing page. */
export class LogEventPublisher implements EventPublisher {
  readonly recent: LifecycleEvent[] = [];

  constructor(private readonly logger: BrokerLogger) {}

  async publish(event: LifecycleEvent): Promise<void> {
    this.logger.info('lifecycle event', { ...event, at: new Date(event.at).toISOString() });
    this.recent.unshift(event);
    this.recent.length = Math.min(this.recent.length, 100);
  }
}

/**
 * Publishes without letting a failure to publish fail the operation that caused the event:
 * the connection's state in the table is the truth; the event is a notification of it.
 */
export async function publishSafely(
  publisher: EventPublisher,
  logger: BrokerLogger,
  event: LifecycleEvent,
): Promise<void> {
  try {
    await publisher.publish(event);
  } catch (error) {
    logger.error('lifecycle event not published', {
      type: event.type,
      provider: event.provider,
      connectionId: event.connectionId,
      error: (error as Error).message,
    });
  }
}
