import type { CatalogEntry } from '../catalog.js';
/** Every catalog file, one import each (bundled with the functions: no file reads at run time). */
export declare const catalogFiles: readonly CatalogEntry[];
