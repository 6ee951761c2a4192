/** RUN/.lock: one trainer per run; a live owner is refused by pid, a dead one's lock is taken over. */
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { acquireRunLock, runLockPath } from '../../src/runs/index.js';
import { refusal } from '../helpers/refusal.js';

let run: string;
test.before.each(async () => {
  run = await mkdtemp(join(tmpdir(), 'osteo-lock-'));
});
test.after.each(async () => {
  await rm(run, { recursive: true, force: true });
});


const lockOf = (pid: number, host = hostname()) => JSON.stringify({ pid, host, started: '2026-01-01T00:00:00.000Z' });

/** The pid of a process that has ended (a pid is reused only after the kernel wraps around). */
function deadPid(): number {
  const child = spawnSync(process.execPath, ['-e', '0']);
  assert.ok(child.pid && child.status === 0);
  return child.pid;
}

test('taking the lock writes pid and host; releasing removes it; a released lock can be taken again', async () => {
  const release = await acquireRunLock(run);
  const owner = JSON.parse(await readFile(runLockPath(run), 'utf8'));
  assert.equal([owner.pid, owner.host], [process.pid, hostname()]);
  await release();
  assert.not.ok(existsSync(runLockPath(run)));
  await (await acquireRunLock(run))();
});

test('a live owner is refused naming its pid, in another process and in this one; the lock is left alone', async () => {
  const sleeper = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)']);
  try {
    await writeFile(runLockPath(run), lockOf(sleeper.pid!));
    const message = await refusal(acquireRunLock(run));
    assert.match(message, new RegExp(`is being trained by process ${sleeper.pid} .*kill ${sleeper.pid}`));
    assert.is(JSON.parse(await readFile(runLockPath(run), 'utf8')).pid, sleeper.pid);
  } finally {
    const exited = once(sleeper, 'exit');
    sleeper.kill();
    await exited; // reaped: kill(pid, 0) fails from here on
  }
  const release = await acquireRunLock(run); // the sleeper has gone: stale
  assert.match(await refusal(acquireRunLock(run)), new RegExp(`process ${process.pid}`));
  await release();
});

test('a stale lock (its process is gone, or the file is cut short) is taken over', async () => {
  for (const stale of [lockOf(deadPid()), '{"pid": 12']) {
    await writeFile(runLockPath(run), stale);
    const release = await acquireRunLock(run);
    assert.is(JSON.parse(await readFile(runLockPath(run), 'utf8')).pid, process.pid);
    await release();
  }
});

test("another host's lock cannot be checked from here: refused, naming the host and the file to delete", async () => {
  await writeFile(runLockPath(run), lockOf(deadPid(), 'elsewhere.example'));
  const message = await refusal(acquireRunLock(run));
  assert.match(message, /locked by process \d+ on host elsewhere\.example/);
  assert.ok(message.includes(`delete ${runLockPath(run)}`));
});

test.run();
