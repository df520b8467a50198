// The package's public surface for code that embeds or extends the broker.
export {
  createBroker,
  depsFromEnvironment,
  getBroker,
  type Broker,
  type BrokerDeps,
} from './broker.ts';
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
export type { TokenAnswer, TokenRequest } from './token-service.ts';
