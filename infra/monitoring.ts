import { Aws, Duration, type RemovalPolicy } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import { SnsAction } from 'aws-cdk-lib/aws-cloudwatch-actions';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import type { IHttpApi } from 'aws-cdk-lib/aws-apigatewayv2';
import type { Function as LambdaFunction } from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as sns from 'aws-cdk-lib/aws-sns';
import type { IQueue } from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import { metricNames } from '../shared/metric-names.ts';

/** The refresher's summary log line (shared/refresher.ts: `logger.info('refresher run', summary)`). */
export const refresherSummaryMessage = 'refresher run';

/** The `service` dimension Powertools Metrics adds to every broker metric (shared/observability.ts). */
export const metricsService = 'oauth-token-broker';

/** Where the broker's metrics go (POWERTOOLS_METRICS_NAMESPACE): one namespace per stage. */

export const metricsNamespaceFor = (stage: string) => `oauth-token-broker/${stage}`;

export interface BrokerMonitoringProps {
  stage: string;
  removalPolicy: RemovalPolicy;
  /** Every broker function, by its short name: each gets error, throttle and duration alarms. */
  functions: Record<string, LambdaFunction>;
  refresher: { fn: LambdaFunction; logGroup: logs.ILogGroup; deadLetterQueue: IQueue };
  scheduleMinutes: number;
  api: IHttpApi;
  /** `provider_unavailable` answers in 5 minutes that count as a burst. Default 10. */
  providerUnavailableBurst?: number;
}

/**
 * Alarms to one SNS topic the team subscribes to: errors of every function, and for the
 * refresher its dead-letter queue and failed renewals (from its summary log line). The topic is
 * encrypted with its own key, which CloudWatch may use to publish; the token key stays for tokens.
 */
export class BrokerMonitoring extends Construct {
  readonly topic: sns.Topic;
  readonly alarms: cloudwatch.Alarm[] = [];
  readonly dashboard: cloudwatch.Dashboard;

  constructor(scope: Construct, id: string, props: BrokerMonitoringProps) {
    super(scope, id);
    const { stage } = props;
    const prefix = `oauth-token-broker-${stage}`;

    const topicKey = new kms.Key(this, 'AlarmTopicKey', {
      description: `oauth-token-broker ${stage}: the alarm topic's messages at rest`,
      alias: `alias/${prefix}-alarms`,
      enableKeyRotation: true,
      removalPolicy: props.removalPolicy,
    });
    // CloudWatch publishes to an encrypted topic only if it may use the key, and (the topic having
    // a policy of its own, for enforceSSL) only if the topic lets it publish. Both are limited to
    // this stack's alarms (aws:SourceArn), so no other alarm can use them. The key actions are the
    // ones the SNS guide lists for AWS service publishers (sns-key-management, "compatibility with
    // AWS services"); this key protects nothing but this topic.
    const fromOurAlarms = {
      StringEquals: { 'aws:SourceAccount': Aws.ACCOUNT_ID },
      ArnLike: {
        'aws:SourceArn': `arn:${Aws.PARTITION}:cloudwatch:${Aws.REGION}:${Aws.ACCOUNT_ID}:alarm:${prefix}-*`,
      },
    };
    const cloudWatch = new iam.ServicePrincipal('cloudwatch.amazonaws.com');
    topicKey.addToResourcePolicy(
      new iam.PolicyStatement({
        sid: 'CloudWatchAlarmsEncryptForTopic',
        principals: [cloudWatch],
        actions: ['kms:Decrypt', 'kms:GenerateDataKey*'],
        resources: ['*'],
        conditions: fromOurAlarms,
      }),
    );
    this.topic = new sns.Topic(this, 'AlarmTopic', {
      topicName: `${prefix}-alarms`,
      displayName: `oauth-token-broker (${stage}) alarms`,
      masterKey: topicKey,
      enforceSSL: true,
    });
    this.topic.addToResourcePolicy(
      new iam.PolicyStatement({
        sid: 'CloudWatchAlarmsPublish',
        principals: [cloudWatch],
        actions: ['sns:Publish'],
        resources: [this.topic.topicArn],
        conditions: fromOurAlarms,
      }),
    );
    const action = new SnsAction(this.topic);
    const add = (alarm: cloudwatch.Alarm) => {
      alarm.addAlarmAction(action);
      alarm.addOkAction(action);
      this.alarms.push(alarm);
    };

    const fiveMinutes = Duration.minutes(5);
    const namespace = metricsNamespaceFor(stage);
    const tokenAnswers = (code: string) =>
      new cloudwatch.Metric({
        namespace,
        metricName: metricNames.tokenAnswers,
        dimensionsMap: { service: metricsService, code },
        statistic: 'Sum',
        period: fiveMinutes,
      });
    const atLeastOnce = {
      threshold: 1,
      evaluationPeriods: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    };

    for (const [name, fn] of Object.entries(props.functions)) {
      add(
        new cloudwatch.Alarm(this, `${pascal(name)}Errors`, {
          alarmName: `${prefix}-${name}-errors`,
          alarmDescription: `The ${name} function failed (an unhandled error, a timeout, a crash, or for token and connections an internal_error answer; refusals answered with another code are not errors). See its log group.`,
          metric: fn.metricErrors({ period: fiveMinutes, statistic: 'Sum' }),
          ...atLeastOnce,
        }),
      );
      // The refresher's reserved concurrency of 1 throttles an overlapping run by design; the
      // heartbeat alarm below says when runs stop completing.
      if (fn !== props.refresher.fn) {
        add(
          new cloudwatch.Alarm(this, `${pascal(name)}Throttles`, {
            alarmName: `${prefix}-${name}-throttles`,
            alarmDescription: `Invocations of the ${name} function were throttled (its reserved concurrency or the account's limit).`,
            metric: fn.metricThrottles({ period: fiveMinutes, statistic: 'Sum' }),
            ...atLeastOnce,
          }),
        );
      }
      const timeoutMs = fn.timeout?.toMilliseconds() ?? 3000;
      add(
        new cloudwatch.Alarm(this, `${pascal(name)}DurationNearTimeout`, {
          alarmName: `${prefix}-${name}-duration`,
          alarmDescription: `An invocation of the ${name} function ran past 90% of its ${timeoutMs / 1000} s timeout.`,
          metric: fn.metricDuration({ period: fiveMinutes, statistic: 'Maximum' }),
          threshold: Math.floor(timeoutMs * 0.9),
          evaluationPeriods: 1,
          comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
          treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
        }),
      );
    }

    add(
      new cloudwatch.Alarm(this, 'TokenInternalErrors', {
        alarmName: `${prefix}-token-internal-errors`,
        alarmDescription:
          'The token function answered internal_error (its table, key or secrets unreachable, or a bug). See its log group.',
        metric: tokenAnswers('internal_error'),
        ...atLeastOnce,
      }),
    );
    const burst = props.providerUnavailableBurst ?? 10;
    add(
      new cloudwatch.Alarm(this, 'TokenProviderUnavailable', {
        alarmName: `${prefix}-token-provider-unavailable`,
        alarmDescription: `The token function answered provider_unavailable ${burst} times or more in 5 minutes: a provider is down or slow (the refresher log and each connection's lastError say which).`,
        metric: tokenAnswers('provider_unavailable'),
        threshold: burst,
        evaluationPeriods: 1,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      }),
    );

    // A run that never starts or never finishes sends no heartbeat: missing data is breaching.
    // Three schedule periods, in one alarm period (CloudWatch allows a day at most).
    const heartbeatMinutes = Math.min(3 * props.scheduleMinutes, 1440);
    const refresherRuns = new cloudwatch.Metric({
      namespace,
      metricName: metricNames.refresherRuns,
      dimensionsMap: { service: metricsService },
      statistic: 'Sum',
      period: Duration.minutes(heartbeatMinutes),
    });
    add(
      new cloudwatch.Alarm(this, 'RefresherHeartbeat', {
        alarmName: `${prefix}-refresher-heartbeat`,
        alarmDescription: `No refresher run completed in ${heartbeatMinutes} minutes (three schedule periods): the schedule, the function or its table is down, and tokens are not being renewed ahead of expiry.`,
        metric: refresherRuns,
        threshold: 1,
        evaluationPeriods: 1,
        comparisonOperator: cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
        treatMissingData: cloudwatch.TreatMissingData.BREACHING,
      }),
    );

    const deadLetters = props.refresher.deadLetterQueue.metricApproximateNumberOfMessagesVisible({
      period: fiveMinutes,
      statistic: 'Maximum',
    });
    add(
      new cloudwatch.Alarm(this, 'RefresherDeadLetters', {
        alarmName: `${prefix}-refresher-dead-letters`,
        alarmDescription:
          'A scheduled refresher run could not be delivered or failed after its retries; it is in the dead-letter queue.',
        metric: deadLetters,
        ...atLeastOnce,
      }),
    );

    // The refresher's own run succeeds while single renewals fail (a provider outage): its summary
    // line counts them. One failed run is retried with backoff; failures in two periods in a row
    // (each at least one run long) are worth a person's look.
    const failures = new logs.MetricFilter(this, 'RefreshFailuresFilter', {
      logGroup: props.refresher.logGroup,
      filterPattern: logs.FilterPattern.stringValue('$.message', '=', refresherSummaryMessage),
      metricNamespace: namespace,
      metricName: 'RefreshFailures',
      metricValue: '$.failed',
    });
    const refreshFailures = failures.metric({
      period: Duration.minutes(Math.min(Math.max(props.scheduleMinutes, 5), 1440)),
      statistic: 'Sum',
    });
    add(
      new cloudwatch.Alarm(this, 'RefreshFailures', {
        alarmName: `${prefix}-refresh-failures`,
        alarmDescription:
          'Scheduled renewals failed in consecutive refresher runs (the refresher log says which provider and connection; lastError on each connection says why).',
        metric: refreshFailures,
        threshold: 1,
        evaluationPeriods: 2,
        datapointsToAlarm: 2,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      }),
    );

    const api5xx = props.api.metricServerError({ period: fiveMinutes, statistic: 'Sum' });
    add(
      new cloudwatch.Alarm(this, 'Api5xx', {
        alarmName: `${prefix}-api-5xx`,
        alarmDescription:
          'The HTTP API answered 5xx (a connect or callback function failed or timed out). See their log groups and the API access log.',
        metric: api5xx,
        ...atLeastOnce,
      }),
    );

    const fns = Object.entries(props.functions);
    const search = (dimensions: string, metricName: string, label: string) =>
      new cloudwatch.MathExpression({
        expression: `SEARCH('{${namespace},${dimensions}} MetricName="${metricName}"', 'Sum', 300)`,
        label,
        period: fiveMinutes,
      });
    this.dashboard = new cloudwatch.Dashboard(this, 'Dashboard', {
      dashboardName: prefix,
      defaultInterval: Duration.hours(6),
      widgets: [
        [
          new cloudwatch.GraphWidget({
            title: 'Token answers by code',
            left: [search('service,code', metricNames.tokenAnswers, 'token answers')],
            width: 12,
          }),
          new cloudwatch.GraphWidget({
            title: 'Renewals by provider and outcome',
            left: [search('service,provider,outcome', metricNames.renewals, 'renewals')],
            width: 12,
          }),
        ],
        [
          new cloudwatch.GraphWidget({
            title: 'Refresher runs, failed renewals, dead letters',
            left: [
              refresherRuns.with({ period: fiveMinutes, label: 'completed runs' }),
              refreshFailures,
            ],
            right: [deadLetters],
            width: 12,
          }),
          new cloudwatch.GraphWidget({
            title: 'Refresher run summary',
            left: [
              search('service', 'RefresherDue', 'due'),
              search('service', 'RefresherRefreshed', 'refreshed'),
              search('service', 'RefresherFailed', 'failed'),
              search('service', 'RefresherNeedsReauth', 'needs reauth'),
            ],
            width: 12,
          }),
        ],
        [
          new cloudwatch.GraphWidget({
            title: 'Function errors',
            left: fns.map(([name, fn]) => fn.metricErrors({ period: fiveMinutes, label: name })),
            width: 8,
          }),
          new cloudwatch.GraphWidget({
            title: 'Function throttles',
            left: fns.map(([name, fn]) => fn.metricThrottles({ period: fiveMinutes, label: name })),
            width: 8,
          }),
          new cloudwatch.GraphWidget({
            title: 'Function duration (max, ms)',
            left: fns.map(([name, fn]) =>
              fn.metricDuration({ period: fiveMinutes, statistic: 'Maximum', label: name }),
            ),
            width: 8,
          }),
        ],
        [
          new cloudwatch.GraphWidget({
            title: 'HTTP API 5xx and 4xx',
            left: [api5xx, props.api.metricClientError({ period: fiveMinutes, statistic: 'Sum' })],
            width: 12,
          }),
          new cloudwatch.AlarmStatusWidget({
            title: 'Alarms',
            alarms: this.alarms,
            width: 12,
          }),
        ],
      ],
    });
  }
}

function pascal(name: string): string {
  return name
    .split(/[^A-Za-z0-9]+/)
    .filter(Boolean)
    .map((part) => part[0]!.toUpperCase() + part.slice(1))
    .join('');
}
