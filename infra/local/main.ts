import { startLocalBroker, type LocalBroker } from './local-broker.ts';
import { secretProblems, startUpFailureLine, StartUpError } from './start-up.ts';

/** `npm start`: the broker offline, with sandbox providers; prints what to try next. */
let local: LocalBroker;
try {
  const port = Number(process.env.PORT ?? 3000);
  if (!Number.isInteger(port) || port < 0 || port > 65_535) {
    throw new StartUpError(`PORT must be a port number (0–65535), not "${process.env.PORT}".`);
  }
  local = await startLocalBroker({ port });
} catch (error) {
  // The user's set-up (a config key, a busy port, a second npm start): one line, no stack.
  console.error(startUpFailureLine(error));
  process.exit(1);
}

const problems = await secretProblems(local.broker);
const providers = [...local.broker.providers.values()]
  .map(
    (p) =>
      `    ${p.id.padEnd(10)} kind ${p.kind.kind.padEnd(7)} ${p.context.baseUrl}${problems.get(p.id) ? '   (not set up: see below)' : ''}`,
  )
  .join('\n');

console.log(`
oauth-token-broker is running offline at ${local.url}
  store:    .broker/dynalite (embedded DynamoDB, kept across restarts)
  key:      .broker/local-master.key     secrets: ${local.secretsFile}
  providers:
${providers}

Fetch a token through the Lambda Invoke API:
  curl -s ${local.url}/2015-03-31/functions/token/invocations -d '{"provider":"quidkey"}'
  aws lambda invoke --endpoint-url ${local.url} --function-name token \\
    --cli-binary-format raw-in-base64-out --payload '{"provider":"quiqup"}' token.json && cat token.json

Check it with the sandbox API (use the accessToken from the answer):
  curl -s ${local.url}/sandbox/quidkey/api/v1/me -H "Authorization: Bearer <accessToken>"
  curl -s ${local.url}/sandbox/quiqup/me -H "Authorization: Bearer <accessToken>"

Connect a user's account (quicko, quipt, any oauth2 provider): open ${local.url}/ and click
Connect; then fetch that connection's token (OAuth 1.0a providers sign a request):
  curl -s ${local.url}/2015-03-31/functions/token/invocations \
    -d '{"provider":"quipt","connectionId":"demo-user","sign":{"method":"GET","url":"${local.url}/sandbox/quipt/v2/me"}}'

The refresher runs every minute here (every refresh.scheduleMinutes in AWS); run it now with
  curl -s ${local.url}/2015-03-31/functions/refresher/invocations -d '{}'
Lifecycle events: ${local.url}/local/events   Provider calls so far: ${local.url}/sandbox/_stats
Stop with Ctrl-C. Then \`npm run reset\` forgets the connections and events.
`);
// One line per provider that cannot work yet, and what to do; its calls answer
// provider_misconfigured until then.
for (const [id, problem] of problems) {
  if (problem)
    console.error(
      `warning: ${problem} Add it and restart; ${id} answers provider_misconfigured until then.`,
    );
}

const stop = () => {
  local.close().then(
    () => process.exit(0),
    () => process.exit(1),
  );
};
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
