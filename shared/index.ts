// The broker's surface for code in this repository that embeds or extends it. The npm package
// publishes the client (shared/client/index.ts) and the construct (infra/cdk.ts) instead.
export {
  createBrokerCore,
  depsFromEnvironment,
  getBrokerCore,
  type BrokerCore,
  type BrokerDeps,
} from './broker-core.ts';
export { createBroker, getBroker, type Broker } from './broker.ts';
export { loadConfig, parseConfig, type BrokerConfig } from './config.ts';
export {
  BrokerError,
  InvalidRequestError,
  NeedsReauthError,
  NotFoundError,
  ProviderRejectedError,
  ProviderUnavailableError,
  UnknownProviderError,
  type BrokerErrorCode,
} from './errors.ts';
export type { ProviderKind, TokenSet } from './providers/types.ts';
export type { TokenRequest } from './token-request.ts';
export type { TokenAnswer } from './token-service.ts';
