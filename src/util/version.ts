import { readFileSync } from 'node:fs';

/** osteo's own version, read from package.json (one level above src/ and dist/ alike). */
export const osteoVersion: string = (
  JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }
).version;
