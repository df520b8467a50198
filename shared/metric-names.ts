/**
 * The broker's metric names (Powertools Metrics, EMF, namespace POWERTOOLS_METRICS_NAMESPACE);
 * infra/monitoring.ts alarms on them and draws them.
 */
export const metricNames = {
  /** Token function answers, by `code`: `ok` or the error code. */
  tokenAnswers: 'TokenAnswers',
  /** Connections function answers, by `code`. */
  connectionsAnswers: 'ConnectionsAnswers',
  /** Renewals by `provider` and `outcome`: renewed, failed, needs_reauth. */
  renewals: 'Renewals',
  /** Connections that became needs_reauth, by `provider`. */
  needsReauth: 'NeedsReauthTransitions',
  /** One per completed refresher run: its heartbeat. */
  refresherRuns: 'RefresherRuns',
} as const;
