import type { ServerResponse } from 'node:http';
import { lambdaContext, type LocalHandler } from './lambda-context.ts';

const invokePath = /^\/2015-03-31\/functions\/([^/]+)\/invocations$/;

/** The function name from an Invoke API path: a name, `name:qualifier`, or a full ARN. */
export function matchInvokePath(path: string): string | undefined {
  const match = invokePath.exec(path);
  if (!match) return undefined;
  const target = decodeURIComponent(match[1]!);
  const arn = /^arn:aws[^:]*:lambda:[^:]*:[^:]*:function:([^:]+)/.exec(target);
  return arn ? arn[1] : target.split(':')[0];
}

/**
 * Answers `POST /2015-03-31/functions/{name}/invocations` as the Lambda service does, so
 * `aws lambda invoke --endpoint-url` and `@aws-sdk/client-lambda` work unchanged: 200 with the
 * handler's result, `X-Amz-Function-Error: Unhandled` when it throws, 404
 * ResourceNotFoundException for an unknown function, 400 InvalidRequestContentException for a
 * payload that is not JSON. `Event` invocations answer 202 and run in the background.
 */
export async function invokeFunction(
  functions: Record<string, LocalHandler>,
  name: string,
  payload: string,
  invocationType: string | undefined,
  res: ServerResponse,
  /** Told of each background (`Event`) run, so a shutdown can wait for it. */
  background: (run: Promise<unknown>) => void,
): Promise<void> {
  // Own names only: `constructor`, `__proto__` or `hasOwnProperty` are no function of ours.
  const handler = Object.hasOwn(functions, name) ? functions[name] : undefined;
  if (!handler) {
    return awsError(res, 404, 'ResourceNotFoundException', `Function not found: ${name}`);
  }
  let event: unknown;
  try {
    event = payload.length === 0 ? {} : JSON.parse(payload);
  } catch {
    return awsError(
      res,
      400,
      'InvalidRequestContentException',
      'Could not parse request body into json',
    );
  }
  if (invocationType === 'DryRun') {
    res.writeHead(204).end();
    return;
  }
  const run = handler(event, lambdaContext(name));
  if (invocationType === 'Event') {
    background(
      run.catch((error: unknown) =>
        console.error(`async invoke of ${name} failed:`, (error as Error).name),
      ),
    );
    res.writeHead(202).end();
    return;
  }
  const headers: Record<string, string> = {
    'content-type': 'application/json',
    'x-amz-executed-version': '$LATEST',
  };
  try {
    const result = await run;
    res.writeHead(200, headers).end(JSON.stringify(result ?? null));
  } catch (error) {
    // As Lambda reports an unhandled error: its type and message (our handlers map every error
    // they expect to an answer, so this is a bug path).
    const err = error instanceof Error ? error : new Error(String(error));
    res
      .writeHead(200, { ...headers, 'x-amz-function-error': 'Unhandled' })
      .end(JSON.stringify({ errorType: err.name, errorMessage: err.message }));
  }
}

function awsError(res: ServerResponse, status: number, type: string, message: string): void {
  res
    .writeHead(status, { 'content-type': 'application/json', 'x-amzn-errortype': type })
    .end(JSON.stringify({ Type: 'User', message }));
}
