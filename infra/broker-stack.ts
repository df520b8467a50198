import { CfnOutput, Stack, type StackProps } from 'aws-cdk-lib';
import type { Construct } from 'constructs';
import { pascalCase, TokenBroker, type TokenBrokerProps } from './token-broker.ts';

export type BrokerStackProps = StackProps & TokenBrokerProps;

/**
 * This repository's own deployment: one stack holding the TokenBroker construct, with its
 * outputs. Another CDK app uses the construct the same way (`oauth-token-broker/cdk`).
 */
export class BrokerStack extends Stack {
  readonly broker: TokenBroker;

  constructor(scope: Construct, id: string, props: BrokerStackProps) {
    const { stage, config, customDomain, keyAdmin, tracing, publicRouteConcurrency, ...rest } =
      props;
    super(scope, id, rest);
    const broker = new TokenBroker(this, 'Broker', {
      stage,
      config,
      ...(customDomain ? { customDomain } : {}),
      ...(keyAdmin ? { keyAdmin } : {}),
      ...(tracing !== undefined ? { tracing } : {}),
      ...(publicRouteConcurrency !== undefined ? { publicRouteConcurrency } : {}),
    });
    this.broker = broker;
    const { functions } = broker;

    new CfnOutput(this, 'ApiUrl', {
      value: broker.apiUrl,
      description: 'Base URL of the HTTP API',
    });
    new CfnOutput(this, 'TokenFunctionName', {
      value: functions.token.functionName,
      description: 'Invoke this with TokenBrokerClient (functionName)',
    });
    new CfnOutput(this, 'TokenFunctionArn', { value: functions.token.functionArn });
    new CfnOutput(this, 'ConnectionsFunctionName', {
      value: functions.connections.functionName,
      description: 'Invoke this from your backend: createConnectSession, get, list, delete',
    });
    new CfnOutput(this, 'ConnectionsFunctionArn', { value: functions.connections.functionArn });
    new CfnOutput(this, 'RefresherFunctionName', { value: functions.refresher.functionName });
    new CfnOutput(this, 'TableName', { value: broker.table.tableName });
    new CfnOutput(this, 'EventBusName', {
      value: broker.eventBus.eventBusName,
      description: 'Lifecycle events (source oauth-token-broker); put your rules on this bus',
    });
    new CfnOutput(this, 'AlarmTopicArn', {
      value: broker.monitoring.topic.topicArn,
      description: 'Subscribe to this topic for the broker’s alarms',
    });
    new CfnOutput(this, 'DashboardName', { value: broker.monitoring.dashboard.dashboardName });
    for (const [providerId, url] of Object.entries(broker.callbackUrls)) {
      new CfnOutput(this, `CallbackUrl${pascalCase(providerId)}`, {
        value: url,
        description: `Redirect URI to register with ${providerId}`,
      });
    }
    if (broker.domain && customDomain) {
      new CfnOutput(this, 'ApiDomainTarget', {
        value: broker.domain.regionalDomainName,
        description: `Point a CNAME (or alias) record for ${customDomain.domainName} here`,
      });
    }
  }
}
