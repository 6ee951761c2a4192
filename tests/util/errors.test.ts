/** environmentUserError: a machine's condition (full disk, read-only, a file where a folder belongs) is a user error naming the path. */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { DataError, UserError, environmentUserError } from '../../src/util/index.js';
import { tempDir } from '../helpers/temp.js';

function systemError(code: string, fields: Record<string, string>): NodeJS.ErrnoException {
  return Object.assign(new Error(`${code}: simulated`), { code, ...fields });
}

async function thrown(action: () => Promise<unknown>): Promise<unknown> {
  try {
    await action();
  } catch (error) {
    return error;
  }
  throw new Error('expected the action to throw');
}

test('each environment code becomes a UserError that names the path and what to do', () => {
  const cases: [string, RegExp][] = [
    ['ENOSPC', /no space left on the disk holding \/out\/x.*free some space.*ENOSPC in write/],
    ['EDQUOT', /quota exceeded writing \/out\/x/],
    ['EROFS', /\/out\/x is on a read-only file system: choose an output on a writable disk/],
    ['EACCES', /no permission to use \/out\/x: choose a folder you can write to/],
    ['EPERM', /does not permit this on \/out\/x/],
    ['ENOTDIR', /a part of \/out\/x is a file where a folder is needed/],
    ['EISDIR', /\/out\/x is a folder where a file is needed: give a file name/],
    ['ENOENT', /\/out\/x does not exist: check the path/],
    ['ENAMETOOLONG', /\/out\/x is too long/],
    ['EIO', /input\/output error on \/out\/x/],
  ];
  for (const [code, pattern] of cases) {
    const mapped = environmentUserError(systemError(code, { path: '/out/x', syscall: 'write' }));
    assert.instance(mapped, UserError, code);
    assert.match(mapped!.message, pattern, code);
  }
  // Too many open files names no path, and needs none.
  assert.match(environmentUserError(systemError('EMFILE', { syscall: 'open' }))!.message, /ulimit -n/);
  // ENOSPC from a write() carries no path: the caller's path is used when given.
  assert.match(environmentUserError(systemError('ENOSPC', { syscall: 'write' }), '/runs/a/best')!.message, /disk holding \/runs\/a\/best/);
  // A rename onto an existing folder names the destination the user chose, not the temporary source.
  assert.match(environmentUserError(systemError('ENOTEMPTY', { path: '/out/.tmp-1', dest: '/out/eval', syscall: 'rename' }))!.message, /^\/out\/eval is a folder that is not empty/);
});

test('anything else stays what it is: bugs keep their stack, user errors are not wrapped twice', () => {
  assert.is(environmentUserError(new TypeError('x is undefined')), undefined);
  assert.is(environmentUserError(systemError('ERR_INVALID_ARG_TYPE', { path: '/x' })), undefined);
  assert.is(environmentUserError(systemError('ENOENT', {})), undefined, 'a code without any path names nothing to act on');
  assert.is(environmentUserError(new UserError('already clear')), undefined);
  assert.is(environmentUserError(new DataError('/f', 'bad')), undefined);
  assert.is(environmentUserError('a string'), undefined);
});

test('real file-system errors: a path under a regular file (ENOTDIR), a folder written as a file (EISDIR), /proc (read-only or refused)', async () => {
  const dir = await tempDir();
  try {
    const file = join(dir.path, 'plain.txt');
    await writeFile(file, 'x');
    const notDir = environmentUserError(await thrown(() => mkdir(join(file, 'out'), { recursive: true })));
    assert.instance(notDir, UserError);
    assert.ok(notDir!.message.includes(file), notDir!.message);
    assert.match(notDir!.message, /a file where a folder is needed/);
    // mkdir -p through a file says EEXIST, naming the file.
    const throughFile = environmentUserError(await thrown(() => mkdir(join(file, 'a', 'b'), { recursive: true })));
    assert.instance(throughFile, UserError);
    assert.ok(throughFile!.message.includes(file), throughFile!.message);
    assert.match(throughFile!.message, /a file where a folder is needed/);
    const isDir = environmentUserError(await thrown(() => writeFile(dir.path, 'x')));
    assert.match(isDir!.message, /is a folder where a file is needed/);
    assert.ok(isDir!.message.includes(dir.path));
    // Root may write almost anywhere, but not into /proc: whichever code the kernel gives is mapped.
    const proc = environmentUserError(await thrown(() => writeFile('/proc/osteo-test-output', 'x')));
    assert.instance(proc, UserError);
    assert.ok(proc!.message.includes('/proc/osteo-test-output'), proc!.message);
  } finally {
    await dir.cleanup();
  }
});

test.run();
