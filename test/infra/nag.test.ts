import { App, Aspects, Stack } from 'aws-cdk-lib';
import { Annotations, Match } from 'aws-cdk-lib/assertions';
import { Secret } from 'aws-cdk-lib/aws-secretsmanager';
import { AwsSolutionsChecks } from 'cdk-nag';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { removeSynthOutputs, synthBroker, type SynthesizedBroker } from './synth.ts';

afterAll(removeSynthOutputs);

const awsSolutions = Match.stringLikeRegexp('AwsSolutions-');

interface NagSuppression {
  id: string;
  reason: string;
}

describe('cdk-nag AwsSolutions checks', () => {
  let broker: SynthesizedBroker;
  beforeAll(() => {
    // Synthesized for prod, as deployed: the checks run over the real, bundled stack.
    broker = synthBroker({ stage: 'prod' });
  });

  it('reports no unsuppressed error or warning on the broker stack', () => {
    const annotations = Annotations.fromStack(broker.stack);
    const summarize = (messages: ReturnType<Annotations['findError']>) =>
      messages.map((m) => `${m.id}: ${String(m.entry.data).split('\n')[0]}`);
    expect(summarize(annotations.findError('*', awsSolutions))).toEqual([]);
    expect(summarize(annotations.findWarning('*', awsSolutions))).toEqual([]);
  });

  it('gives every suppression a written reason', () => {
    const resources = broker.template.toJSON().Resources as Record<
      string,
      { Metadata?: { cdk_nag?: { rules_to_suppress?: NagSuppression[] } } }
    >;
    const suppressions = Object.values(resources).flatMap(
      (resource) => resource.Metadata?.cdk_nag?.rules_to_suppress ?? [],
    );
    // Exactly these rules are suppressed, each for a reason written next to its resource.
    expect([...new Set(suppressions.map((s) => s.id))].sort()).toEqual([
      'AwsSolutions-APIG4',
      'AwsSolutions-IAM5',
      'AwsSolutions-SMG4',
      'AwsSolutions-SQS3',
    ]);
    for (const suppression of suppressions) {
      expect(suppression.reason.length, suppression.id).toBeGreaterThan(40);
    }
  });

  it('does catch a violation (so a clean report means something)', () => {
    const app = new App();
    const stack = new Stack(app, 'NagControl');
    new Secret(stack, 'Unrotated');
    Aspects.of(app).add(new AwsSolutionsChecks());
    app.synth();
    const errors = Annotations.fromStack(stack).findError('*', awsSolutions);
    expect(errors.map((e) => String(e.entry.data))).toEqual(
      expect.arrayContaining([expect.stringContaining('AwsSolutions-SMG4')]),
    );
  });
});
