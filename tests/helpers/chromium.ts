/**
 * The browser of the web viewer's tests: Debian's `chromium` (never a downloaded one), driven by
 * puppeteer-core. OSTEO_CHROMIUM names another executable.
 */
import { spawnSync } from 'node:child_process';
import type { Requirement } from './requirements.js';

function findChromium(): string | null {
  const named = process.env['OSTEO_CHROMIUM'];
  if (named) return named;
  for (const candidate of ['chromium', 'chromium-browser']) {
    const found = spawnSync('sh', ['-c', `command -v ${candidate}`], { encoding: 'utf8' });
    if (found.status === 0 && found.stdout.trim() !== '') return found.stdout.trim();
  }
  return null;
}

/** The executable, once the requirement is met. */
export function chromiumPath(): string {
  const path = findChromium();
  if (path === null) throw new Error('no chromium executable');
  return path;
}

export const chromiumRequirement: Requirement = {
  name: 'Chromium (headless, for the web viewer tests)',
  install: 'apt-get install --no-install-recommends chromium',
  probe() {
    const path = findChromium();
    if (path === null) return 'no chromium or chromium-browser on PATH (OSTEO_CHROMIUM may name one)';
    const version = spawnSync(path, ['--version'], { encoding: 'utf8', timeout: 30_000 });
    if (version.error) return version.error.message;
    return version.status === 0 ? null : `${path} --version exited with ${version.status}: ${version.stderr.trim().split('\n').pop()}`;
  },
};
