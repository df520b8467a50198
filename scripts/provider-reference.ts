import type { TSchema } from '@sinclair/typebox';
import { defaultKinds } from '../shared/providers/registry.ts';

/**
 * The provider-entry field reference in README.md, generated from the kinds' TypeBox schemas
 * (`npm run docs:providers` writes it; a test fails when it is stale). One table per kind: every
 * field, its type and its one-line description from the schema.
 */
export const referenceStart = '<!-- provider-fields:start (npm run docs:providers) -->';
export const referenceEnd = '<!-- provider-fields:end -->';

/** Fields every kind shares are listed once, after the kinds' own. */
const commonFields = new Set([
  'catalog',
  'displayName',
  'environments',
  'environmentOverrides',
  'defaultEnvironment',
  'environment',
  'baseUrl',
  'apiBaseUrl',
  'headers',
  'connectionParams',
  'params',
  'docs',
  'refreshLeadSeconds',
  'reauthLeadSeconds',
  'timeoutMs',
]);

function typeOf(schema: TSchema): string {
  if (schema.const !== undefined) return `\`${JSON.stringify(schema.const)}\``;
  if (schema.anyOf) return (schema.anyOf as TSchema[]).map(typeOf).join(' \\| ');
  if (schema.type === 'array') return `${typeOf(schema.items as TSchema)}[]`;
  if (schema.type === 'object') return schema.patternProperties ? 'map' : 'object';
  return String(schema.type ?? 'any');
}

function row(name: string, schema: TSchema, required: boolean): string {
  const description = String(schema.description ?? '').replaceAll('|', '\\|');
  return `| \`${name}\`${required ? ' (required)' : ''} | ${typeOf(schema)} | ${description} |`;
}

function table(properties: Record<string, TSchema>, required: Set<string>): string {
  return [
    '| field | type | meaning |',
    '| --- | --- | --- |',
    ...Object.entries(properties).map(([name, schema]) => row(name, schema, required.has(name))),
  ].join('\n');
}

export function providerReference(): string {
  const sections: string[] = [];
  let common: Record<string, TSchema> = {};
  for (const [name, kind] of Object.entries(defaultKinds)) {
    const properties = kind.configSchema.properties as Record<string, TSchema>;
    const own = Object.fromEntries(
      Object.entries(properties).filter(([field]) => field !== 'kind' && !commonFields.has(field)),
    );
    common = Object.fromEntries(
      Object.entries(properties).filter(([field]) => commonFields.has(field)),
    );
    sections.push(`#### \`${name}\`\n\n${table(own, new Set(kind.configSchema.required ?? []))}`);
  }
  sections.push(`#### Every kind\n\n${table(common, new Set())}`);
  return `${referenceStart}\n\n${sections.join('\n\n')}\n\n${referenceEnd}`;
}

/** README.md with its reference section replaced by a freshly generated one. */
export function withReference(readme: string, reference = providerReference()): string {
  const start = readme.indexOf(referenceStart);
  const end = readme.indexOf(referenceEnd);
  if (start < 0 || end < start) throw new Error(`README.md has no ${referenceStart} section`);
  return readme.slice(0, start) + reference + readme.slice(end + referenceEnd.length);
}
