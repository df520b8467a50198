import { readFileSync } from 'node:fs';
import { format, resolveConfig } from 'prettier';
import { describe, expect, it } from 'vitest';
import { providerReference, withReference } from '../scripts/provider-reference.ts';
import { defaultKinds } from '../shared/providers/registry.ts';

describe('README provider field reference', () => {
  it('is the one generated from the kinds’ schemas (run `npm run docs:providers`)', async () => {
    const readme = readFileSync('README.md', 'utf8');
    const options = { ...(await resolveConfig('README.md')), filepath: 'README.md' };
    expect(readme).toBe(await format(withReference(readme), options));
  });

  it('names every kind and every field of each kind, each with a description', () => {
    const reference = providerReference();
    for (const [name, kind] of Object.entries(defaultKinds)) {
      expect(reference).toContain(`#### \`${name}\``);
      for (const [field, schema] of Object.entries(kind.configSchema.properties)) {
        if (field === 'kind') continue;
        expect(reference).toContain(`\`${field}\``);
        expect((schema as { description?: string }).description, `${name}.${field}`).toBeTruthy();
      }
    }
  });
});
