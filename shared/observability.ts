import { Metrics, MetricUnit } from '@aws-lambda-powertools/metrics';
import type { Tracer } from '@aws-lambda-powertools/tracer';
import type { EventPublisher, LifecycleEvent } from './events.ts';
import { metricNames } from './metric-names.ts';
import type { RefreshSummary } from './refresher.ts';

export { metricNames } from './metric-names.ts';

const serviceName = 'oauth-token-broker';

/**
 * Whether Powertools Tracer would trace here: in Lambda (not SAM local or the Amplify mock) with
 * POWERTOOLS_TRACE_ENABLED not false — the rules the Tracer itself applies.
 */
export function tracingEnabled(env: NodeJS.ProcessEnv = process.env): boolean {
  const executionEnv = env.AWS_EXECUTION_ENV ?? '';
  return (
    (env.POWERTOOLS_TRACE_ENABLED ?? '').toLowerCase() !== 'false' &&
    executionEnv !== '' &&
    executionEnv !== 'AWS_Lambda_amplify-mock' &&
    !env.AWS_SAM_LOCAL
  );
}

/**
 * X-Ray tracing (Powertools Tracer), loaded only where it traces. Importing the X-Ray SDK turns
 * on its context tracking (cls-hooked: an async hook with a destroy callback on every promise of
 * the process) even where the Tracer is off: offline that cost the refresher about a seventh of
 * its run at 10,000 renewals (npm run bench), and a deployment with `tracing: false` paid it too.
 */
export const tracer: Tracer | undefined = tracingEnabled()
  ? new (await import('@aws-lambda-powertools/tracer')).Tracer({ serviceName })
  : undefined;

/** An AWS SDK client, traced as a subsegment of the invocation where tracing is on. */
export function traced<T>(client: T): T {
  return tracer ? tracer.captureAWSv3Client(client) : client;
}

let containerMetrics: Metrics | undefined;

/**
 * This container's metrics; none outside Lambda (npm start, the tests that call handlers), where
 * nothing reads EMF lines. Built on first use, from the environment of that moment.
 */
export function metrics(env: NodeJS.ProcessEnv = process.env): Metrics | undefined {
  if (!env.AWS_LAMBDA_FUNCTION_NAME) return undefined;
  containerMetrics ??= new Metrics({ serviceName });
  return containerMetrics;
}

/** Counts one answer of an invoked function under its code, flushed with the invocation. */
export function countAnswer(metricName: string, code: string): void {
  const target = metrics()?.singleMetric();
  if (!target) return;
  target.addDimension('code', code);
  target.addMetric(metricName, MetricUnit.Count, 1);
}

/** The refresher run's figures, and the heartbeat the alarm waits for. */
export function countRefresherRun(summary: RefreshSummary): void {
  const target = metrics();
  if (!target) return;
  target.addMetric(metricNames.refresherRuns, MetricUnit.Count, 1);
  target.addMetric('RefresherDue', MetricUnit.Count, summary.due);
  target.addMetric('RefresherRefreshed', MetricUnit.Count, summary.refreshed);
  target.addMetric('RefresherFailed', MetricUnit.Count, summary.failed);
  target.addMetric('RefresherNeedsReauth', MetricUnit.Count, summary.needsReauth);
  target.addMetric('RefresherSkipped', MetricUnit.Count, summary.skipped);
  target.addMetric('RefresherDurationMs', MetricUnit.Milliseconds, summary.durationMs);
  target.publishStoredMetrics();
}

/** One renewal that stored new tokens (a refresh, a re-mint or a first mint), by provider. */
export function countRenewed(providerId: string): void {
  const target = metrics()?.singleMetric();
  if (!target) return;
  target.addDimensions({ provider: providerId, outcome: 'renewed' });
  target.addMetric(metricNames.renewals, MetricUnit.Count, 1);
}

/**
 * Publishes as `inner` does, and counts failed renewals and needs_reauth transitions by provider
 * from the same events (one source of truth for what happened to a connection).
 */
export class CountingEventPublisher implements EventPublisher {
  constructor(private readonly inner: EventPublisher) {}

  async publish(event: LifecycleEvent): Promise<void> {
    const outcome =
      event.type === 'Connection Refresh Failed'
        ? 'failed'
        : event.type === 'Connection Needs Reauth'
          ? 'needs_reauth'
          : undefined;
    const target = outcome ? metrics()?.singleMetric() : undefined;
    if (target && outcome) {
      target.addDimensions({ provider: event.provider, outcome });
      target.addMetric(metricNames.renewals, MetricUnit.Count, 1);
      if (outcome === 'needs_reauth') {
        const transition = metrics()!.singleMetric();
        transition.addDimension('provider', event.provider);
        transition.addMetric(metricNames.needsReauth, MetricUnit.Count, 1);
      }
    }
    return this.inner.publish(event);
  }
}
