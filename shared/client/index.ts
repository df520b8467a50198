export {
  TokenBrokerClient,
  TokenBrokerError,
  type BrokerSignedRequest,
  type BrokerToken,
  type GetTokenRequest,
  type SignRequestInput,
  type TokenBrokerClientOptions,
  type TokenBrokerErrorCode,
} from './token-broker-client.ts';
