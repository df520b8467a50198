// `oauth-token-broker/cdk`: the broker as a construct for another CDK app.
export {
  TokenBroker,
  keyAdminActions,
  type CustomDomain,
  type TokenBrokerProps,
} from './token-broker.ts';
export type { BrokerFunctionName } from './function-names.ts';
export { metricNames } from '../shared/metric-names.ts';
