import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/setup/moto.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // Two cores here and in CI: the suites start real servers, so keep the fan-out small.
    maxWorkers: 2,
    // A green run is quiet: the broker logs errors only (a test that looks at log lines raises the
    // level while it captures them, test/helpers/local.ts captureOutput), and the SDK's notice
    // about Node versions it will drop in 2027 says nothing about the code under test.
    env: {
      POWERTOOLS_LOG_LEVEL: 'ERROR',
      AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
    },
  },
});
