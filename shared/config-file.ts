import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { ConfigError } from './errors.ts';

/**
 * The configuration's JSON, parsed but not yet checked: `BROKER_CONFIG_JSON` if set, else the
 * file `BROKER_CONFIG` (default `broker.config.json`) in `LAMBDA_TASK_ROOT` (default the working
 * directory). Both readers use it: `loadConfig` (a file as a person writes it) and
 * `loadDeployedConfig` (the file the construct ships); `source` names where it came from.
 */
export function readConfigJson(env: NodeJS.ProcessEnv = process.env): {
  json: unknown;
  source: string;
} {
  if (env.BROKER_CONFIG_JSON) {
    return {
      json: parseJsonText(env.BROKER_CONFIG_JSON, 'BROKER_CONFIG_JSON'),
      source: 'BROKER_CONFIG_JSON',
    };
  }
  const path = resolve(env.LAMBDA_TASK_ROOT ?? '.', env.BROKER_CONFIG ?? 'broker.config.json');
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (cause) {
    throw new ConfigError(
      `Cannot read the configuration file ${path}: ${(cause as Error).message}`,
    );
  }
  return { json: parseJsonText(text, path), source: path };
}

/** The configuration holds no secrets, so JSON.parse's message (which quotes the text) may stay. */
function parseJsonText(text: string, source: string): unknown {
  try {
    return JSON.parse(text);
  } catch (cause) {
    throw new ConfigError(`${source}: not valid JSON (${(cause as Error).message})`);
  }
}
