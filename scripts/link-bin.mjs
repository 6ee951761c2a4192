// npm links the `bin` of dependencies into node_modules/.bin but never the root package's own, so
// `npx osteo` right after `npm ci` would look for a registry package instead. Link it here (prepare).
import { chmodSync, mkdirSync, rmSync, symlinkSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const target = join(root, 'dist', 'cli.js');
const link = join(root, 'node_modules', '.bin', 'osteo');
chmodSync(target, 0o755);
mkdirSync(dirname(link), { recursive: true });
rmSync(link, { force: true });
symlinkSync(relative(dirname(link), target), link);
