import type { BrokerConfig } from './config.ts';
import { readConfigJson } from './config-file.ts';
import { ConfigError } from './errors.ts';
import { checkDeployedConfig } from './generated/request-checks.ts';

/**
 * The configuration as a deployed function reads it: the file the TokenBroker construct wrote
 * into the function's code asset (`broker.config.json` beside the bundle, in `LAMBDA_TASK_ROOT`),
 * or inline JSON in `BROKER_CONFIG_JSON`. The construct validated it at synth with parseConfig
 * and shipped parseConfig's result (defaults applied, catalog entries merged), so reading it
 * needs neither the schemas' validator nor the catalog, and neither is in a function's bundle
 * (bytes Node would parse at every cold start). A check compiled from
 * `deployedConfigSchema` (shared/generated/request-checks.ts) refuses any file of another shape,
 * such as a broker.config.json as a person writes it: that one goes through parseConfig
 * (`loadConfig`), as `npm start` does.
 */
export function loadDeployedConfig(env: NodeJS.ProcessEnv = process.env): BrokerConfig {
  const { json, source } = readConfigJson(env);
  if (!checkDeployedConfig(json)) {
    throw new ConfigError(
      `${source}: not a configuration as the TokenBroker construct deploys it (validated, with its defaults and catalog entries filled in, so every provider names its kind): synthesize and deploy again.`,
    );
  }
  return json as BrokerConfig;
}
