/**
 * Workload 7, session claim: one connect link (a connect session for Quipt, whose start route
 * fetches an OAuth 1.0a request token from the provider) opened by many browsers at once. The
 * session is single-use, so ideally one start reaches the provider and one flow item is written;
 * every other open is refused without a provider call.
 */
import { ScanCommand } from '@aws-sdk/client-dynamodb';
import type { BrokerConfig } from '../shared/config.ts';
import { startBenchRuntime, type BenchRow, type WorkloadResult } from './harness.ts';

export interface SessionClaimOptions {
  /** With a Quipt (oauth1, sandbox) provider named `quipt` and `returnTo` allowed. */
  config: BrokerConfig;
  returnTo: string;
  opens: number;
}

export async function benchSessionClaim(options: SessionClaimOptions): Promise<WorkloadResult> {
  const runtime = await startBenchRuntime({ config: options.config });
  try {
    const { local } = runtime;
    const invoked = await fetch(`${local.url}/2015-03-31/functions/connections/invocations`, {
      method: 'POST',
      body: JSON.stringify({
        action: 'createConnectSession',
        provider: 'quipt',
        connectionId: 'bench-link',
        returnTo: options.returnTo,
      }),
    });
    const session = (await invoked.json()) as { ok: boolean; url?: string };
    if (!session.ok || !session.url) throw new Error('createConnectSession failed');
    const sandbox = local.sandboxes.quipt;
    const before = sandbox.callCount();
    const statuses = await Promise.all(
      Array.from({ length: options.opens }, async () => {
        const response = await fetch(session.url!, { redirect: 'manual' });
        await response.arrayBuffer();
        return response.status;
      }),
    );
    const providerCalls = sandbox.callCount() - before;
    const flows = await local.dynamo.send(
      new ScanCommand({
        TableName: local.tableName,
        Select: 'COUNT',
        FilterExpression: 'begins_with(pk, :flow)',
        ExpressionAttributeValues: { ':flow': { S: 'flow#' } },
      }),
    );
    const redirected = statuses.filter((status) => status === 302).length;
    const workload = '7 session claim';
    const rows: BenchRow[] = [
      {
        workload,
        metric: `provider calls (${options.opens} parallel opens of one connect link)`,
        measured: String(providerCalls),
        goal: '1',
        met: providerCalls === 1,
      },
      {
        workload,
        metric: 'flow items written',
        measured: String(flows.Count ?? 0),
        goal: '1',
        met: flows.Count === 1,
      },
      {
        workload,
        metric: 'opens sent on to the provider (302)',
        measured: String(redirected),
        goal: '1',
        met: redirected === 1,
      },
    ];
    return {
      rows,
      details: { opens: options.opens, providerCalls, flows: flows.Count, statuses },
      notes: [],
    };
  } finally {
    await runtime.close();
  }
}
