import { Aws, Duration, type RemovalPolicy } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import { SnsAction } from 'aws-cdk-lib/aws-cloudwatch-actions';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import type { IFunction } from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as sns from 'aws-cdk-lib/aws-sns';
import type { IQueue } from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';

/** The refresher's summary log line (shared/refresher.ts: `logger.info('refresher run', summary)`). */
export const refresherSummaryMessage = 'refresher run';

export interface BrokerMonitoringProps {
  stage: string;
  removalPolicy: RemovalPolicy;
  /** Every broker function, by its short name: each gets an error alarm. */
  functions: Record<string, IFunction>;
  refresher: { fn: IFunction; logGroup: logs.ILogGroup; deadLetterQueue: IQueue };
  scheduleMinutes: number;
}

/**
 * Alarms to one SNS topic the team subscribes to: errors of every function, and for the
 * refresher its dead-letter queue and failed renewals (from its summary log line). The topic is
 * encrypted with its own key, which CloudWatch may use to publish; the token key stays for tokens.
 */
export class BrokerMonitoring extends Construct {
  readonly topic: sns.Topic;
  readonly alarms: cloudwatch.Alarm[] = [];

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

    for (const [name, fn] of Object.entries(props.functions)) {
      add(
        new cloudwatch.Alarm(this, `${pascal(name)}Errors`, {
          alarmName: `${prefix}-${name}-errors`,
          alarmDescription: `The ${name} function failed (an unhandled error, a timeout or a crash; refusals answered with a code are not errors). See its log group.`,
          metric: fn.metricErrors({ period: Duration.minutes(5), statistic: 'Sum' }),
          threshold: 1,
          evaluationPeriods: 1,
          comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
          treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
        }),
      );
    }

    add(
      new cloudwatch.Alarm(this, 'RefresherDeadLetters', {
        alarmName: `${prefix}-refresher-dead-letters`,
        alarmDescription:
          'A scheduled refresher run could not be delivered or failed after its retries; it is in the dead-letter queue.',
        metric: props.refresher.deadLetterQueue.metricApproximateNumberOfMessagesVisible({
          period: Duration.minutes(5),
          statistic: 'Maximum',
        }),
        threshold: 1,
        evaluationPeriods: 1,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      }),
    );

    // The refresher's own run succeeds while single renewals fail (a provider outage): its summary
    // line counts them. One failed run is retried with backoff; failures in two periods in a row
    // (each at least one run long) are worth a person's look.
    const failures = new logs.MetricFilter(this, 'RefreshFailuresFilter', {
      logGroup: props.refresher.logGroup,
      filterPattern: logs.FilterPattern.stringValue('$.message', '=', refresherSummaryMessage),
      metricNamespace: `oauth-token-broker/${stage}`,
      metricName: 'RefreshFailures',
      metricValue: '$.failed',
    });
    add(
      new cloudwatch.Alarm(this, 'RefreshFailures', {
        alarmName: `${prefix}-refresh-failures`,
        alarmDescription:
          'Scheduled renewals failed in consecutive refresher runs (the refresher log says which provider and connection; lastError on each connection says why).',
        metric: failures.metric({
          period: Duration.minutes(Math.min(Math.max(props.scheduleMinutes, 5), 1440)),
          statistic: 'Sum',
        }),
        threshold: 1,
        evaluationPeriods: 2,
        datapointsToAlarm: 2,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      }),
    );
  }
}

function pascal(name: string): string {
  return name
    .split(/[^A-Za-z0-9]+/)
    .filter(Boolean)
    .map((part) => part[0]!.toUpperCase() + part.slice(1))
    .join('');
}
