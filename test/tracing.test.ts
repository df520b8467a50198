import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { tracingEnabled } from '../shared/observability.ts';

const run = promisify(execFile);

describe('tracingEnabled: where Powertools Tracer would trace', () => {
  const lambda = { AWS_EXECUTION_ENV: 'AWS_Lambda_nodejs24.x' };
  it.each([
    ['outside Lambda', {}, false],
    ['in Lambda', lambda, true],
    [
      'in Lambda, POWERTOOLS_TRACE_ENABLED=true',
      { ...lambda, POWERTOOLS_TRACE_ENABLED: 'true' },
      true,
    ],
    [
      'in Lambda, POWERTOOLS_TRACE_ENABLED=false',
      { ...lambda, POWERTOOLS_TRACE_ENABLED: 'false' },
      false,
    ],
    [
      'in Lambda, POWERTOOLS_TRACE_ENABLED=FALSE',
      { ...lambda, POWERTOOLS_TRACE_ENABLED: 'FALSE' },
      false,
    ],
    ['under SAM local', { ...lambda, AWS_SAM_LOCAL: 'true' }, false],
    ['under the Amplify mock', { AWS_EXECUTION_ENV: 'AWS_Lambda_amplify-mock' }, false],
  ])('%s → %s', (_, env, expected) => {
    expect(tracingEnabled(env)).toBe(expected);
  });
});

/**
 * The X-Ray SDK registers its cls-hooked namespace (and the async hook behind it, which tracks
 * every promise of the process) when it is imported: a fresh process that loads every function's
 * middleware and the broker tells whether it was.
 */
async function probe(env: Record<string, string>) {
  const script = `
    const { observability } = await import('./shared/middleware.ts');
    const { tracer } = await import('./shared/observability.ts');
    await import('./shared/broker.ts');
    console.log(JSON.stringify({
      namespaces: Object.keys(process.namespaces ?? {}),
      tracer: tracer !== undefined,
      middlewares: observability().length,
    }));`;
  const { AWS_EXECUTION_ENV: _, POWERTOOLS_TRACE_ENABLED: __, ...inherited } = process.env;
  const { stdout } = await run(
    process.execPath,
    ['--import', 'tsx', '--input-type=module', '--eval', script],
    { cwd: new URL('..', import.meta.url), env: { ...inherited, ...env } },
  );
  return JSON.parse(stdout.trim().split('\n').pop()!) as {
    namespaces: string[];
    tracer: boolean;
    middlewares: number;
  };
}

describe('the X-Ray SDK is loaded only where tracing is on', () => {
  it('outside Lambda: no Tracer, no middleware, no async hook', async () => {
    expect(await probe({})).toEqual({ namespaces: [], tracer: false, middlewares: 0 });
  });

  it('in Lambda with tracing off: none either', async () => {
    const env = { AWS_EXECUTION_ENV: 'AWS_Lambda_nodejs24.x', POWERTOOLS_TRACE_ENABLED: 'false' };
    expect(await probe(env)).toEqual({ namespaces: [], tracer: false, middlewares: 0 });
  });

  it('in Lambda with tracing on: the Tracer and its handler middleware', async () => {
    const env = { AWS_EXECUTION_ENV: 'AWS_Lambda_nodejs24.x', POWERTOOLS_TRACE_ENABLED: 'true' };
    expect(await probe(env)).toEqual({ namespaces: ['AWSXRay'], tracer: true, middlewares: 1 });
  });
});
