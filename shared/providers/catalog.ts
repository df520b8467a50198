import * as Type from '@sinclair/typebox';
import type { TObject, TSchema } from '@sinclair/typebox';
import { catalogFiles } from './catalog/index.ts';

/**
 * The provider catalog: one data file per provider under ./catalog/, the provider's facts (kind,
 * environments, endpoints, quirks, docs), validated against its kind's schema by a test. A
 * broker.config.json entry names one with `"catalog": "<id>"` and overrides what it must.
 * A new file is listed in ./catalog/index.ts (the catalog test fails until it is).
 */
export { catalogFiles };

/** A catalog file as stored: a provider entry plus who it is and where its values came from. */
export interface CatalogEntry {
  id: string;
  displayName: string;
  kind: string;
  docs: Record<string, string>;
  [field: string]: unknown;
}

/** The catalog by id (the file name without .json). */
export type Catalog = ReadonlyMap<string, CatalogEntry>;

export const defaultCatalog: Catalog = new Map(catalogFiles.map((entry) => [entry.id, entry]));

/** Fields only a catalog file has: they say what the entry is, not how to call the provider. */
const catalogOnlyFields = ['id', 'docs'] as const;

/**
 * The schema of a catalog file of a kind: the kind's entry schema, with `id`, `displayName` and
 * `docs` required and nothing else allowed (a misspelled field is an error).
 */
export function catalogFileSchema(entrySchema: TObject): TSchema {
  const { catalog: _catalog, ...properties } = entrySchema.properties;
  return Type.Object(
    {
      ...properties,
      id: Type.String({ pattern: '^[a-z0-9][a-z0-9-]{0,62}$', description: 'The file name.' }),
      displayName: Type.String({ minLength: 1, maxLength: 128 }),
      docs: Type.Record(
        Type.String({ pattern: '^[A-Za-z][A-Za-z0-9_]{0,63}$' }),
        Type.String({ pattern: '^https://' }),
        { minProperties: 1 },
      ),
    },
    { additionalProperties: false },
  );
}

/**
 * An entry of broker.config.json with its catalog entry merged in: the catalog's fields, then
 * the entry's own (which win). `kind` comes from the catalog and cannot be overridden. An entry
 * without `catalog` is returned as it is (all its fields inline).
 */
export function withCatalogEntry(
  entry: Record<string, unknown>,
  catalog: Catalog,
  where: string,
): { entry: Record<string, unknown> } | { error: string } {
  const id = entry.catalog;
  if (id === undefined) return { entry };
  if (typeof id !== 'string' || !catalog.has(id)) {
    return {
      error: `${where}.catalog: no catalog entry "${String(id)}" (known: ${[...catalog.keys()].join(', ')})`,
    };
  }
  if (entry.kind !== undefined && entry.kind !== catalog.get(id)!.kind) {
    return {
      error: `${where}.kind: the catalog entry "${id}" is of kind ${catalog.get(id)!.kind}`,
    };
  }
  const stored = { ...catalog.get(id)! } as Record<string, unknown>;
  for (const field of catalogOnlyFields) delete stored[field];
  return { entry: { ...stored, ...entry, kind: stored.kind } };
}
