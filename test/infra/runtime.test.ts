import { describe, expect, it } from 'vitest';
import { brokerRuntime } from '../../infra/broker-function.ts';

describe('runtime', () => {
  it('runs the tests on the Node major the Lambda functions run on', () => {
    // `nodejs24.x` → 24; the `node` dev dependency puts that major under every npm script.
    const lambdaMajor = /^nodejs(\d+)\.x$/.exec(brokerRuntime.name)?.[1];
    expect(lambdaMajor).toBeDefined();
    expect(process.versions.node.split('.')[0]).toBe(lambdaMajor);
  });
});
