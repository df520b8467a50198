import { Logger } from '@aws-lambda-powertools/logger';

/**
 * The broker's structured logger (JSON lines; level from POWERTOOLS_LOG_LEVEL, default INFO).
 * Log ids, codes and times only: never a token, secret, authorization code or verifier.
 */
export const logger = new Logger({ serviceName: 'oauth-token-broker' });

export type BrokerLogger = Pick<Logger, 'debug' | 'info' | 'warn' | 'error'>;
