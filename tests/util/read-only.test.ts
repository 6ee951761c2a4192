/**
 * On a read-only file system every command says so, naming the folder, instead of "does not exist …
 * create the folder" (what Node's recursive mkdir reports there: ENOENT). Each command runs in a
 * process of its own inside a mount namespace where one folder is bind-mounted read-only
 * (`unshare -rm`, util-linux; no root needed where user namespaces are allowed).
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { indexDataset, splitDataset, synthesizePhantom } from '../../src/data/index.js';
import { osteoArgv } from '../helpers/cli.js';
import { testWith, type Requirement } from '../helpers/requirements.js';
import { tempDir } from '../helpers/temp.js';

/** `sh` script: bind-mount $0 read-only onto itself, then run the command. */
const readOnlyScript = 'mount --bind "$0" "$0" && mount -o remount,ro,bind "$0" && exec "$@"';

const readOnlyMounts: Requirement = {
  name: 'a read-only bind mount in a user namespace (unshare -rm, util-linux)',
  install: 'apt-get install util-linux, and allow user namespaces (sysctl kernel.unprivileged_userns_clone=1; on Ubuntu 24.04 also kernel.apparmor_restrict_unprivileged_userns=0), or run as root',
  probe() {
    const folder = mkdtempSync(join(tmpdir(), 'osteo-read-only-probe-'));
    try {
      const probe = spawnSync('unshare', ['-rm', 'sh', '-c', readOnlyScript, folder, 'sh', '-c', '! touch "$0/probe" 2>/dev/null', folder], { encoding: 'utf8' });
      if (probe.error) return probe.error.message;
      return probe.status === 0 ? null : `unshare -rm could not make a read-only mount: ${probe.stderr.trim() || `exit ${probe.status}`}`;
    } finally {
      rmSync(folder, { recursive: true, force: true });
    }
  },
};

/** `osteo …args` with `folder` read-only; its exit status and stderr. */
function osteoReadOnly(folder: string, args: readonly string[]): { code: number | null; stderr: string } {
  const child = spawnSync('unshare', ['-rm', 'sh', '-c', readOnlyScript, folder, process.execPath, ...osteoArgv(args)], { encoding: 'utf8' });
  return { code: child.status, stderr: child.stderr };
}

function assertReadOnlyMessage(run: { code: number | null; stderr: string }, path: string, what: string): void {
  assert.is(run.code, 1, `${what}: exit ${run.code}: ${run.stderr}`);
  assert.ok(run.stderr.includes(`${path} is on a read-only file system`), `${what} names ${path} as read-only: ${run.stderr}`);
  assert.not.match(run.stderr, /does not exist|internal error/, what);
}

testWith(readOnlyMounts, test, 'data synth, reproduce, cv and train name the read-only folder: as --dest, --out, and as the dataset', async () => {
  const { path: dir, cleanup } = await tempDir('osteo-read-only-');
  try {
    const locked = join(dir, 'locked');
    await mkdir(locked);
    const data = join(dir, 'phantom');
    await synthesizePhantom({ dest: data, perClass: 6, size: 32, seed: 2 });
    await indexDataset({ dataDir: data });
    await splitDataset({ dataDir: data });
    const pipeline = join(dir, 'tiny.json');
    await writeFile(pipeline, JSON.stringify({ data: { source: 'phantom', dir: data, perClass: 6, size: 32 }, models: [{ model: 'resnet18', pretrained: false }], set: ['epochs=1', 'imageSize=32'] }));
    const cv = ['--model', 'resnet18', '--folds', '2', '--image-size', '32', '--epochs', '1', '--backend', 'wasm', '--workers', '1'];

    // folders to be made below the read-only one: where mkdir -p says ENOENT
    assertReadOnlyMessage(osteoReadOnly(locked, ['data', 'synth', '--dest', join(locked, 'new', 'phantom'), '--per-class', '6', '--size', '32']), join(locked, 'new', 'phantom'), 'data synth');
    assertReadOnlyMessage(osteoReadOnly(locked, ['reproduce', '--config', pipeline, '--out', join(locked, 'out'), '--no-pretrained', '--backend', 'wasm']), join(locked, 'out'), 'reproduce');
    assertReadOnlyMessage(osteoReadOnly(locked, ['cv', ...cv, '--data', data, '--out', join(locked, 'new', 'cv')]), locked, 'cv --out');
    assertReadOnlyMessage(osteoReadOnly(data, ['cv', ...cv, '--data', data, '--out', join(dir, 'cv')]), join(data, '.cache'), 'cv on a read-only dataset');
    assertReadOnlyMessage(osteoReadOnly(locked, ['train', '--model', 'resnet18', '--data', data, '--out', join(locked, 'run'), '--image-size', '32', '--backend', 'wasm', '--workers', '1']), locked, 'train');
  } finally {
    await cleanup();
  }
});

test.run();
