import { writeFileSync } from 'node:fs';
import { configJsonSchema } from '../shared/config.ts';

/** Writes broker.config.schema.json from the TypeBox schemas (a test checks it is current). */
writeFileSync('broker.config.schema.json', JSON.stringify(configJsonSchema(), null, 2) + '\n');
console.log('wrote broker.config.schema.json');
