import { TokenBrokerClient } from 'oauth-token-broker';

const client = new TokenBrokerClient({
  functionName: process.env.TOKEN_FUNCTION ?? 'token', // a name or an ARN
  endpoint: process.env.BROKER_ENDPOINT, // the offline broker (npm start); omit in AWS
});
const token = await client.getToken({ provider: 'quiqup' });
const api = `${process.env.BROKER_ENDPOINT}/sandbox/quiqup/me`;
const me = await fetch(api, { headers: token.headers });
console.log(JSON.stringify({ status: me.status, provider: token.provider }));
