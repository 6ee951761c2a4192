/** Preflight checks of an output folder (writability, free space) and exclusive file creation. */
import { existsSync, readdirSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { checkWritableFolder, createFileExclusive, recoverStagedFolder, replaceEntries, replaceFolder, type StatFs } from '../../src/util/index.js';
import { mkdir, rename } from 'node:fs/promises';
import { refusal } from '../helpers/refusal.js';

let dir: string;
test.before.each(async () => {
  dir = await mkdtemp(join(tmpdir(), 'osteo-fs-'));
});
test.after.each(async () => {
  await rm(dir, { recursive: true, force: true });
});


const statfsWith = (bavail: number | bigint, bsize: number | bigint): { calls: string[]; statfs: StatFs } => {
  const calls: string[] = [];
  return { calls, statfs: async (path) => (calls.push(path), { bavail, bsize }) };
};

test('free space: blocks available × block size against the bytes needed, on the nearest existing folder', async () => {
  const enough = statfsWith(256, 4096); // exactly 1 MiB
  const target = join(dir, 'runs', 'r18'); // neither exists yet: the check is on dir, which will hold them
  assert.is(await checkWritableFolder(target, 2 ** 20, enough.statfs), 2 ** 20);
  assert.equal(enough.calls, [dir]);
  const short = statfsWith(255n, 4096n); // one block short, as bigints (statfs's bigint form)
  const message = await refusal(checkWritableFolder(target, 2 ** 20, short.statfs));
  assert.match(message, new RegExp(`^${dir}: 1\\.0 MiB are needed and only 1\\.0 MiB are free`));
  assert.match(message, /free some space or choose a folder on another disk/);
  assert.ok((await refusal(checkWritableFolder(target, 2 ** 30, enough.statfs))).includes('1024.0 MiB are needed'));
  assert.equal(readdirSync(dir), [], 'the probe file was removed and nothing was created');
});

test('the real statfs of a temporary folder reports some free space', async () => {
  const free = await checkWritableFolder(dir, 1);
  assert.ok(free > 0 && Number.isFinite(free), `free ${free}`);
});

test('a file where the folder should be: a UserError naming the file, for the folder itself and for a path under it', async () => {
  const file = join(dir, 'not-a-folder');
  await writeFile(file, 'x');
  for (const target of [file, join(file, 'run'), join(file, 'a', 'b')]) {
    const message = await refusal(checkWritableFolder(target, 0));
    assert.ok(message.startsWith(`${file} is a file`), message);
    assert.match(message, /move the file away or choose another folder/);
  }
});

test('createFileExclusive: the first writer wins, a second gets false, the content is whole and no temporary is left', async () => {
  const file = join(dir, '.lock');
  assert.is(await createFileExclusive(file, 'first'), true);
  assert.is(await createFileExclusive(file, 'second'), false);
  assert.is(await readFile(file, 'utf8'), 'first');
  assert.equal(readdirSync(dir), ['.lock']);
  assert.not.ok(existsSync(join(dir, 'second')));
});

test('replaceFolder: a failed fill leaves the previous folder whole; a finished one replaces it with no stale file or leftover', async () => {
  const target = join(dir, 'out');
  await replaceFolder(target, (staging) => writeFile(join(staging, 'a.bin'), 'old'));
  await writeFile(join(target, 'stale.bin'), 'from before');
  try {
    await replaceFolder(target, async (staging) => {
      await writeFile(join(staging, 'a.bin'), 'half');
      throw new Error('killed mid-write');
    });
    assert.unreachable('the fill threw');
  } catch (error) {
    assert.match((error as Error).message, /killed mid-write/);
  }
  assert.is(await readFile(join(target, 'a.bin'), 'utf8'), 'old');
  await replaceFolder(target, (staging) => writeFile(join(staging, 'a.bin'), 'new'));
  assert.equal(readdirSync(target), ['a.bin']);
  assert.is(await readFile(join(target, 'a.bin'), 'utf8'), 'new');
  assert.equal(readdirSync(dir), ['out']);
});

test('replaceFolder returns what the fill returns, and clears what a dead writer left beside the target first', async () => {
  const target = join(dir, 'out');
  const dead = 2 ** 22 + 54321; // above Linux's default pid_max: no such process
  await mkdir(join(dir, `.out.staging-${dead}-1-1`));
  assert.equal(await replaceFolder(target, async (staging) => {
    await writeFile(join(staging, 'a.bin'), 'x');
    return ['a.bin'];
  }), ['a.bin']);
  assert.equal(readdirSync(dir), ['out']);
});

test("replaceEntries: only the named entries are switched (stale ones removed), the folder's other files stay; a failed fill changes nothing", async () => {
  const target = join(dir, 'dataset');
  await mkdir(join(target, 'Normal'), { recursive: true });
  await writeFile(join(target, 'Normal', 'old.png'), 'old');
  await writeFile(join(target, 'index.csv'), 'stale index');
  await writeFile(join(target, 'notes.txt'), 'mine');
  const owned = ['Normal', 'Osteopenia', 'index.csv', 'record.json'];
  try {
    await replaceEntries(target, owned, async (staging) => {
      await writeFile(join(staging, 'record.json'), 'half');
      throw new Error('killed mid-write');
    });
    assert.unreachable('the fill threw');
  } catch (error) {
    assert.match((error as Error).message, /killed mid-write/);
  }
  assert.equal(readdirSync(target).sort(), ['Normal', 'index.csv', 'notes.txt']);
  assert.equal(readdirSync(dir), ['dataset']);
  const result = await replaceEntries(target, owned, async (staging) => {
    for (const name of ['Normal', 'Osteopenia']) await mkdir(join(staging, name));
    await writeFile(join(staging, 'Normal', 'new.png'), 'new');
    await writeFile(join(staging, 'record.json'), '{}');
    await writeFile(join(staging, 'scratch.zip'), 'not an owned entry: not switched in');
    return 'filled';
  });
  assert.is(result, 'filled');
  assert.equal(readdirSync(target).sort(), ['Normal', 'Osteopenia', 'notes.txt', 'record.json']);
  assert.equal(readdirSync(join(target, 'Normal')), ['new.png']);
  assert.is(await readFile(join(target, 'notes.txt'), 'utf8'), 'mine');
  assert.equal(readdirSync(dir), ['dataset'], 'no staging or set-aside folder is left');
});

test("recoverStagedFolder: a dead writer's staging folder is removed and a folder it set aside is put back; a live writer's are kept", async () => {
  const target = join(dir, 'report');
  const dead = 2 ** 22 + 12345; // above Linux's default pid_max: no such process
  await mkdir(join(dir, `.report.old-${dead}-1-1`));
  await writeFile(join(dir, `.report.old-${dead}-1-1`, 'results.csv'), 'previous');
  await mkdir(join(dir, `.report.staging-${dead}-1-2`));
  await mkdir(join(dir, `.report.staging-${process.pid}-1-3`));
  await recoverStagedFolder(target);
  assert.is(await readFile(join(target, 'results.csv'), 'utf8'), 'previous');
  assert.equal(readdirSync(dir).sort(), [`.report.staging-${process.pid}-1-3`, 'report']);
  await rename(join(dir, `.report.staging-${process.pid}-1-3`), join(dir, 'kept'));
});

test.run();
