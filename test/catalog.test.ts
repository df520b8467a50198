import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import type { TObject } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../shared/config.ts';
import { catalogFiles, catalogFileSchema } from '../shared/providers/catalog.ts';
import { defaultKinds } from '../shared/providers/registry.ts';

// The provider catalog is data: each file is checked against its kind's schema here, so a
// misspelled field or a wrong value fails CI rather than a deployment.
const catalogDir = 'shared/providers/catalog';
const files = readdirSync(catalogDir).filter((name) => name.endsWith('.json'));

/** The entry schema of each kind a catalog file may name. */
const entrySchemas: Record<string, TObject> = Object.fromEntries(
  Object.entries(defaultKinds).map(([name, kind]) => [name, kind.configSchema]),
);

function errorsOf(entry: unknown): string[] {
  const kind = (entry as { kind?: string }).kind ?? '';
  const schema = entrySchemas[kind];
  if (!schema) return [`kind: unknown kind "${kind}"`];
  return [...Value.Errors(catalogFileSchema(schema), entry)].map(
    (error) => `${error.path || '/'}: ${error.message}`,
  );
}

describe('the provider catalog', () => {
  it('holds the four seeds and at least 12 real providers', () => {
    const ids = catalogFiles.map((entry) => entry.id);
    expect(ids).toEqual(expect.arrayContaining(['quiqup', 'quidkey', 'quicko', 'quipt']));
    expect(ids.length).toBeGreaterThanOrEqual(16);
  });

  it('lists every file of the folder in catalog/index.ts, each under its file name', () => {
    expect(catalogFiles.map((entry) => `${entry.id}.json`).sort()).toEqual([...files].sort());
  });

  it.each(files)('%s is valid against its kind’s schema', (file) => {
    const entry: unknown = JSON.parse(readFileSync(join(catalogDir, file), 'utf8'));
    expect(errorsOf(entry)).toEqual([]);
    expect((entry as { id: string }).id).toBe(file.replace(/\.json$/, ''));
  });

  it('fails on a misspelled field, a missing docs link or a plain-http URL', () => {
    const quiqup = catalogFiles.find((entry) => entry.id === 'quiqup')!;
    const { tokenUrl, ...rest } = quiqup;
    expect(errorsOf({ ...rest, tokenURL: tokenUrl })).toEqual(
      expect.arrayContaining([expect.stringContaining('/tokenURL')]),
    );
    const { docs: _docs, ...undocumented } = quiqup;
    expect(errorsOf(undocumented)).toEqual(
      expect.arrayContaining([expect.stringContaining('docs')]),
    );
    expect(
      errorsOf({ ...quiqup, environments: { production: 'http://platform-api.quiqup.com' } }),
    ).not.toEqual([]);
    expect(errorsOf({ ...quiqup, kind: 'oauth3' })).toEqual(['kind: unknown kind "oauth3"']);
  });

  it.each(catalogFiles.filter((entry) => entry.kind in defaultKinds).map((entry) => entry.id))(
    '%s resolves through broker.config.json as {"catalog": id} with its default environment',
    (id) => {
      const entry = catalogFiles.find((candidate) => candidate.id === id)!;
      // Values the entry's URLs need per provider (a tenant, a domain) come from the config.
      const params = Object.fromEntries(
        Object.keys((entry.connectionParams as Record<string, unknown>) ?? {}).map((name) => [
          name,
          'example',
        ]),
      );
      const { providers } = parseConfig({ providers: { p: { catalog: id, params } } });
      expect(providers.p).toMatchObject({ kind: entry.kind, catalog: id });
    },
  );
});

describe('no seed provider named in the core', () => {
  // Outside the catalog data and the Quicko kind (its two modules and its registration lines), no
  // file in shared/ names a seed provider: the core branches on what kinds declare, never on a
  // provider's name.
  const seedNames = /quiqup|quidkey|quipt|quicko/i;
  const allowedFiles = new Set(['shared/providers/quicko.ts', 'shared/providers/config/quicko.ts']);
  const allowedLines = new Map([
    ['shared/providers/protocols.ts', ["import { quicko } from './quicko.ts';", 'quicko,']],
    [
      'shared/providers/registry.ts',
      [
        "import { quickoConfig } from './config/quicko.ts';",
        'quicko: providerKind(defaultProtocols.quicko, quickoConfig),',
      ],
    ],
  ]);

  function* sourceFiles(dir: string): Generator<string> {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) yield* sourceFiles(path);
      else yield relative('.', path);
    }
  }

  it('holds for every file in shared/', () => {
    const offending: string[] = [];
    let checked = 0;
    for (const file of sourceFiles('shared')) {
      if (file.startsWith(`${catalogDir}/`) || allowedFiles.has(file)) continue;
      checked += 1;
      readFileSync(file, 'utf8')
        .split('\n')
        .forEach((line, index) => {
          if (seedNames.test(line) && !allowedLines.get(file)?.includes(line.trim())) {
            offending.push(`${file}:${index + 1}: ${line.trim()}`);
          }
        });
    }
    expect(checked).toBeGreaterThan(30);
    expect(offending).toEqual([]);
  });
});
