import type { TObject, TSchema } from '@sinclair/typebox';
import { catalogFiles } from './catalog/index.js';
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
export declare const defaultCatalog: Catalog;
/**
 * The schema of a catalog file of a kind: the kind's entry schema, with `id`, `displayName` and
 * `docs` required and nothing else allowed (a misspelled field is an error).
 */
export declare function catalogFileSchema(entrySchema: TObject): TSchema;
/**
 * An entry of broker.config.json with its catalog entry merged in: the catalog's fields, then
 * the entry's own (which win). `kind` comes from the catalog and cannot be overridden. An entry
 * without `catalog` is returned as it is (all its fields inline).
 */
export declare function withCatalogEntry(entry: Record<string, unknown>, catalog: Catalog, where: string): {
    entry: Record<string, unknown>;
} | {
    error: string;
};
