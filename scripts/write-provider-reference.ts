import { readFileSync, writeFileSync } from 'node:fs';
import { format, resolveConfig } from 'prettier';
import { withReference } from './provider-reference.ts';

/** Writes the provider field reference into README.md (a test checks it is current). */
const updated = withReference(readFileSync('README.md', 'utf8'));
const options = { ...(await resolveConfig('README.md')), filepath: 'README.md' };
writeFileSync('README.md', await format(updated, options));
console.log('wrote the provider field reference in README.md');
