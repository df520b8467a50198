import { App, Stack } from 'aws-cdk-lib';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { TokenBroker } from 'oauth-token-broker/cdk';

const app = new App();
const stack = new Stack(app, 'Platform');
const broker = new TokenBroker(stack, 'Broker', { stage: 'prod', config: 'broker.config.json' });
const service = new lambda.Function(stack, 'Service', {
  runtime: lambda.Runtime.NODEJS_24_X,
  handler: 'index.handler',
  code: lambda.Code.fromInline('export const handler = async () => "ok";'),
  environment: { TOKEN_FUNCTION_ARN: broker.tokenFunction.functionArn },
});
broker.grantFetchToken(service);
app.synth();
