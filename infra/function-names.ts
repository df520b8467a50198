/**
 * A broker function's short name: the offline runtime's function name, the deployed name's
 * suffix. Its own file, so the construct's published types need nothing of the handlers' code.
 */
export type BrokerFunctionName =
  'token' | 'connections' | 'connect-start' | 'connect-callback' | 'refresher';
