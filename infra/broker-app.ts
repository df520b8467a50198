import { Aspects, type App } from 'aws-cdk-lib';
import { AwsSolutionsChecks } from 'cdk-nag';
import { loadConfig } from '../shared/config.ts';
import { BrokerStack } from './broker-stack.ts';
import type { CustomDomain } from './token-broker.ts';

const stagePattern = /^[a-z][a-z0-9-]{0,19}$/;

/**
 * Adds the broker stack for the app's context (`-c stage=prod`, default dev; optionally
 * `-c domainName=… -c certificateArn=…`) and runs the cdk-nag AWS Solutions checks over it.
 * infra/app.ts and the infra tests build the app the same way through this.
 */
export function addBrokerStack(app: App): BrokerStack {
  const stage = contextString(app, 'stage') ?? 'dev';
  if (!stagePattern.test(stage)) {
    throw new Error(
      `context stage: "${stage}" must match ${stagePattern} (it names the key alias and the functions)`,
    );
  }
  const stack = new BrokerStack(app, `OAuthTokenBroker-${stage}`, {
    stage,
    config: loadConfig(),
    customDomain: customDomain(app),
    description: `oauth-token-broker (${stage}): OAuth token vault and token function`,
    tags: { project: 'oauth-token-broker', stage },
  });
  Aspects.of(app).add(new AwsSolutionsChecks({ verbose: true }));
  return stack;
}

function customDomain(app: App): CustomDomain | undefined {
  const domainName = contextString(app, 'domainName');
  const certificateArn = contextString(app, 'certificateArn');
  if (!domainName && !certificateArn) return undefined;
  if (!domainName || !certificateArn) {
    throw new Error('context: a custom domain needs both domainName and certificateArn');
  }
  return { domainName, certificateArn };
}

function contextString(app: App, key: string): string | undefined {
  const value: unknown = app.node.tryGetContext(key);
  if (value === undefined || value === null || value === '') return undefined;
  if (typeof value !== 'string') throw new Error(`context ${key}: expected a string`);
  return value;
}
