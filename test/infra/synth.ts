import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { App } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { addBrokerStack } from '../../infra/broker-app.ts';
import type { BrokerStack } from '../../infra/broker-stack.ts';

/** cdk.json's feature flags, so a test app behaves as `cdk synth` does. */
export function cdkJsonContext(): Record<string, unknown> {
  const cdkJson = JSON.parse(readFileSync(new URL('../../cdk.json', import.meta.url), 'utf8')) as {
    context?: Record<string, unknown>;
  };
  return cdkJson.context ?? {};
}

const outdirs: string[] = [];

/** Removes what the synths of this test file wrote (bundles, templates). */
export function removeSynthOutputs(): void {
  for (const outdir of outdirs.splice(0)) rmSync(outdir, { recursive: true, force: true });
}

export interface SynthesizedBroker {
  app: App;
  stack: BrokerStack;
  template: Template;
}

/**
 * The broker app as infra/app.ts builds it (cdk-nag included), for the given context. `bundle:
 * false` skips esbuild for suites that only look at the template.
 */
export function synthBroker(
  context: Record<string, string> = {},
  options: { bundle?: boolean } = {},
): SynthesizedBroker {
  const outdir = mkdtempSync(join(tmpdir(), 'broker-synth-'));
  outdirs.push(outdir);
  const app = new App({
    outdir,
    context: {
      ...cdkJsonContext(),
      ...context,
      ...(options.bundle === false ? { 'aws:cdk:bundling-stacks': [] } : {}),
    },
  });
  const stack = addBrokerStack(app);
  return { app, stack, template: Template.fromStack(stack) };
}

export type Resource = { Type: string; Properties?: Record<string, unknown> } & Record<
  string,
  unknown
>;

export function resourcesOfType(template: Template, type: string): Record<string, Resource> {
  return template.findResources(type) as Record<string, Resource>;
}
