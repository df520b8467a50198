export {
  TokenBrokerClient,
  TokenBrokerError,
  type BrokerToken,
  type GetTokenRequest,
  type TokenBrokerClientOptions,
  type TokenBrokerErrorCode,
} from './token-broker-client.ts';
