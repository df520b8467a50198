/**
 * What the functions' bundles get for `semver` (`alias` in infra/broker-function.ts). Only
 * aws-xray-sdk-core's AWS SDK v2 patcher requires it (aws_p.js: `captureAWS` checks the v2 SDK's
 * version); the broker uses SDK v3 clients, traced through `captureAWSv3Client`, so nothing calls
 * it. The real package is 29 KB of each bundle and builds some 40 regular expressions when it
 * loads, on every cold start.
 */
export function gte(): never {
  throw new Error(
    'semver is not bundled with the broker: AWS SDK v2 tracing (captureAWS) is not supported.',
  );
}
