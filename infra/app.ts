import { App } from 'aws-cdk-lib';
import { addBrokerStack } from './broker-app.ts';

// `npm run synth` / `npm run deploy -- -c stage=prod` (cdk.json runs this with tsx).
const app = new App();
addBrokerStack(app);
app.synth();
