import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  configJsonSchema,
  loadConfig,
  parseConfig,
  resolveProviderBaseUrl,
} from '../shared/config.ts';
import { ConfigError } from '../shared/errors.ts';
import { quidkey } from '../shared/providers/quidkey.ts';
import { quiqup } from '../shared/providers/quiqup.ts';

describe('configuration', () => {
  it('loads the committed broker.config.json and applies defaults', () => {
    const config = loadConfig({});
    expect(Object.keys(config.providers)).toEqual(expect.arrayContaining(['quiqup', 'quidkey']));
    expect(config.refresh.leadSeconds).toBe(300);
    expect(config.secretsPrefix).toBe('oauth-token-broker');
  });

  it('keeps broker.config.schema.json in step with the code (run `npm run schema`)', () => {
    const committed = JSON.parse(readFileSync('broker.config.schema.json', 'utf8'));
    expect(committed).toEqual(JSON.parse(JSON.stringify(configJsonSchema())));
  });

  it.each([
    [
      { providers: { quiqup: { kind: 'quiqup', environment: 'prod' } } },
      'providers.quiqup.environment',
    ],
    [{ providers: { quiqup: { kind: 'nope' } } }, 'providers.quiqup.kind: unknown kind "nope"'],
    [
      { providers: { quiqup: { kind: 'quiqup', environment: 'staging', baseUrl: 'ftp://x' } } },
      'providers.quiqup.baseUrl',
    ],
    [
      { providers: { quidkey: { kind: 'quidkey', environment: 'production', extra: 1 } } },
      'providers.quidkey',
    ],
    [{ providers: {}, refresh: { leadSeconds: -1 } }, 'refresh.leadSeconds'],
    [{ providers: {}, allowedReturnTo: ['javascript:alert(1)'] }, 'allowedReturnTo.0'],
    [{ providers: { 'Bad Id': { kind: 'quiqup', environment: 'mock' } } }, 'providers'],
    [{ provider: {} }, 'provider'],
  ])('refuses a bad file and names the key: %j', (raw, key) => {
    expect(() => parseConfig(raw)).toThrowError(ConfigError);
    expect(() => parseConfig(raw)).toThrowError(key);
  });

  it('fails fast on a missing or unparseable file, naming it', () => {
    expect(() => loadConfig({ BROKER_CONFIG: '/nonexistent/broker.json' })).toThrowError(
      /\/nonexistent\/broker.json/,
    );
    expect(() => loadConfig({ BROKER_CONFIG_JSON: '{oops' })).toThrowError(
      /BROKER_CONFIG_JSON: not valid JSON/,
    );
  });

  it('resolves each documented environment and lets baseUrl override it', () => {
    const sandbox = 'http://localhost:3000/sandbox';
    expect(
      resolveProviderBaseUrl({ kind: 'quiqup', environment: 'production' }, quiqup.hosts, sandbox),
    ).toBe('https://platform-api.quiqup.com');
    expect(
      resolveProviderBaseUrl({ kind: 'quiqup', environment: 'staging' }, quiqup.hosts, sandbox),
    ).toBe('https://platform-api.staging.quiqup.com');
    expect(
      resolveProviderBaseUrl({ kind: 'quiqup', environment: 'mock' }, quiqup.hosts, sandbox),
    ).toBe('https://developer-docs.quiqup.com/_mock/auth');
    expect(
      resolveProviderBaseUrl(
        { kind: 'quidkey', environment: 'development' },
        quidkey.hosts,
        sandbox,
      ),
    ).toBe('https://core-dev.quidkey.com');
    expect(
      resolveProviderBaseUrl({ kind: 'quidkey', environment: 'sandbox' }, quidkey.hosts, sandbox),
    ).toBe('http://localhost:3000/sandbox/quidkey');
    expect(
      resolveProviderBaseUrl(
        { kind: 'quidkey', environment: 'production', baseUrl: 'http://mock.test/q/' },
        quidkey.hosts,
        sandbox,
      ),
    ).toBe('http://mock.test/q');
  });
});
