import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { configJsonSchema, loadConfig, parseConfig } from '../shared/config.ts';
import { loadDeployedConfig } from '../shared/deployed-config.ts';
import { resolveProviderBaseUrl } from '../shared/providers/base-url.ts';
import { ConfigError } from '../shared/errors.ts';

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
      { providers: { quiqup: { catalog: 'quiqup', environment: 'prod' } } },
      'providers.quiqup.environment',
    ],
    [{ providers: { quiqup: { kind: 'nope' } } }, 'providers.quiqup.kind: unknown kind "nope"'],
    [
      { providers: { quiqup: { catalog: 'quiqup', environment: 'staging', baseUrl: 'ftp://x' } } },
      'providers.quiqup.baseUrl',
    ],
    [
      { providers: { quidkey: { catalog: 'quidkey', environment: 'production', extra: 1 } } },
      'providers.quidkey',
    ],
    [{ providers: {}, refresh: { leadSeconds: -1 } }, 'refresh.leadSeconds'],
    [{ providers: {}, allowedReturnTo: ['javascript:alert(1)'] }, 'allowedReturnTo.0'],
    [{ providers: { 'Bad Id': { catalog: 'quiqup', environment: 'mock' } } }, 'providers'],
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

  it('resolves each documented environment of a catalog entry and lets baseUrl override it', () => {
    const sandbox = 'http://localhost:3000/sandbox';
    const baseUrl = (entry: Record<string, unknown>) =>
      resolveProviderBaseUrl(parseConfig({ providers: { p: entry } }).providers.p!, sandbox);
    expect(baseUrl({ catalog: 'quiqup', environment: 'production' })).toBe(
      'https://platform-api.quiqup.com',
    );
    expect(baseUrl({ catalog: 'quiqup' })).toBe('https://platform-api.quiqup.com');
    expect(baseUrl({ catalog: 'quiqup', environment: 'staging' })).toBe(
      'https://platform-api.staging.quiqup.com',
    );
    expect(baseUrl({ catalog: 'quiqup', environment: 'mock' })).toBe(
      'https://developer-docs.quiqup.com/_mock/auth',
    );
    expect(baseUrl({ catalog: 'quidkey', environment: 'development' })).toBe(
      'https://core-dev.quidkey.com',
    );
    // sandbox is one more environment, resolved by the runtime: /sandbox/<catalog id>.
    expect(baseUrl({ catalog: 'quidkey', environment: 'sandbox' })).toBe(
      'http://localhost:3000/sandbox/quidkey',
    );
    expect(
      baseUrl({ catalog: 'quidkey', environment: 'production', baseUrl: 'http://mock.test/q/' }),
    ).toBe('http://mock.test/q');
    // A provider whose own docs name a "sandbox" keeps it: the offline one is only a fallback.
    expect(baseUrl({ catalog: 'salesforce', environment: 'sandbox' })).toBe(
      'https://test.salesforce.com',
    );
  });

  it('merges a catalog entry with the overrides of broker.config.json', () => {
    const { providers } = parseConfig({
      providers: {
        quidkey: { catalog: 'quidkey', environment: 'sandbox', refreshLeadSeconds: 60 },
        salesforce: { catalog: 'salesforce', scopes: ['api'] },
      },
    });
    expect(providers.quidkey).toMatchObject({
      kind: 'oauth2',
      grant: 'client_credentials',
      tokenResponsePath: 'data',
      refreshLeadSeconds: 60,
    });
    expect(providers.salesforce!.scopes).toEqual(['api']);
    expect(providers.salesforce!.displayName).toBe('Salesforce');
    expect(() => parseConfig({ providers: { x: { catalog: 'nope' } } })).toThrowError(
      'providers.x.catalog: no catalog entry "nope"',
    );
    expect(() =>
      parseConfig({ providers: { x: { catalog: 'quiqup', kind: 'oauth1' } } }),
    ).toThrowError('providers.x.kind');
    // A seed's old kind name points at its catalog entry.
    expect(() => parseConfig({ providers: { x: { kind: 'quiqup' } } })).toThrowError(
      '"catalog": "quiqup"',
    );
  });
});

describe('the configuration as a deployed function reads it', () => {
  const written = {
    allowedReturnTo: ['https://app.example.com/'],
    providers: {
      quiqup: { catalog: 'quiqup', environment: 'staging' },
      acme: {
        kind: 'oauth2',
        authorizationUrl: 'https://auth.acme.example/authorize',
        tokenUrl: 'https://auth.acme.example/token',
      },
    },
  };

  it("reads parseConfig's result from the function's code directory as it is", () => {
    const taskRoot = mkdtempSync(join(tmpdir(), 'broker-config-'));
    try {
      const deployed = parseConfig(written);
      writeFileSync(join(taskRoot, 'broker.config.json'), JSON.stringify(deployed));
      expect(loadDeployedConfig({ LAMBDA_TASK_ROOT: taskRoot })).toEqual(deployed);
      expect(loadDeployedConfig({ BROKER_CONFIG_JSON: JSON.stringify(deployed) })).toEqual(
        deployed,
      );
    } finally {
      rmSync(taskRoot, { recursive: true, force: true });
    }
  });

  it('refuses a file as a person writes it (no defaults, catalog entries without their kind)', () => {
    expect(() => loadDeployedConfig({ BROKER_CONFIG_JSON: JSON.stringify(written) })).toThrowError(
      /BROKER_CONFIG_JSON: not a configuration as the TokenBroker construct deploys it/,
    );
    const { providers: _providers, ...settings } = parseConfig(written);
    const catalogOnly = { ...settings, providers: { quiqup: { catalog: 'quiqup' } } };
    expect(() =>
      loadDeployedConfig({ BROKER_CONFIG_JSON: JSON.stringify(catalogOnly) }),
    ).toThrowError(ConfigError);
  });

  it('fails fast on a missing or unparseable file, naming it', () => {
    expect(() => loadDeployedConfig({ LAMBDA_TASK_ROOT: '/nonexistent' })).toThrowError(
      /\/nonexistent\/broker.config.json/,
    );
    expect(() => loadDeployedConfig({ BROKER_CONFIG_JSON: '{oops' })).toThrowError(
      /BROKER_CONFIG_JSON: not valid JSON/,
    );
  });
});
