/** The shared test helpers fail when they should: a rejection that did not happen, or the wrong one; output captured and restored. */
import { existsSync } from 'node:fs';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { DataError, UserError } from '../../src/util/index.js';
import { captureMain, cliEntryFor, currentBuild, osteoArgv } from './cli.js';
import { rng, randomSource } from './random.js';
import { refusal, rejection } from './refusal.js';
import { tempDir } from './temp.js';

/** Whether `check` fails with an uvu assertion (the way a test using the helper would fail). */
async function failsAnAssertion(check: () => Promise<unknown>): Promise<boolean> {
  try {
    await check();
  } catch (error) {
    return error instanceof assert.Assertion;
  }
  return false;
}

test('rejection returns what was thrown, from a promise, a function or a synchronous throw', async () => {
  const thrown = new DataError('x.png', 'is truncated');
  assert.is(await rejection(Promise.reject(thrown)), thrown);
  assert.is(await rejection(async () => Promise.reject(thrown), DataError, /truncated/), thrown);
  assert.is(
    await rejection(() => {
      throw thrown;
    }, UserError, DataError),
    thrown,
  );
  assert.is(await rejection(Promise.reject(thrown), (error) => error.message.includes('x.png')), thrown);
});

test('rejection fails on a resolution, another class, a message that does not match, a false predicate', async () => {
  const thrown = new DataError('x.png', 'is truncated');
  assert.ok(await failsAnAssertion(() => rejection(Promise.resolve(1))));
  assert.ok(await failsAnAssertion(() => rejection(Promise.reject(thrown), UserError)));
  assert.ok(await failsAnAssertion(() => rejection(Promise.reject(thrown), DataError, /zero-byte/)));
  assert.ok(await failsAnAssertion(() => rejection(Promise.reject(thrown), () => false)));
});

test('refusal wants a UserError and returns its message', async () => {
  assert.is(await refusal(Promise.reject(new UserError('--epochs must be at least 1')), /--epochs/), '--epochs must be at least 1');
  assert.ok(await failsAnAssertion(() => refusal(Promise.reject(new Error('a bug')))));
});

test('captureMain returns the exit code and the output, and puts stdout and stderr back', async () => {
  const write = { out: process.stdout.write, err: process.stderr.write, log: console.log };
  const help = await captureMain(['--help']);
  assert.is(help.code, 0);
  assert.match(help.stdout, /Usage: osteo/);
  const bad = await captureMain(['train', '--model', 'vgg16', '--data', 'nowhere']);
  assert.is(bad.code, 1);
  assert.match(bad.stderr, /vgg16/);
  assert.is(process.stdout.write, write.out);
  assert.is(process.stderr.write, write.err);
  assert.is(console.log, write.log);
});

test('a spawned CLI runs dist/cli.js only when it was built after the newest source file, else the source', () => {
  const source = ['--import', 'tsx', 'src/cli.ts'];
  assert.equal(cliEntryFor(undefined, 1000), source);
  assert.equal(cliEntryFor(999, 1000), source);
  assert.equal(cliEntryFor(1000, 1000), ['dist/cli.js']);
  assert.equal(cliEntryFor(2000, 1000), ['dist/cli.js']);
  const argv = osteoArgv(['info', '--json']);
  assert.equal(argv.slice(-2), ['info', '--json']);
  assert.ok([JSON.stringify(source), JSON.stringify(['dist/cli.js'])].includes(JSON.stringify(argv.slice(0, -2))), argv.join(' '));
});

test('currentBuild leaves dist/cli.js newer than every source file, so a spawned CLI runs the build', async () => {
  await currentBuild();
  assert.ok(existsSync('dist/cli.js'));
  assert.equal(osteoArgv(['--help']).slice(0, 1), ['dist/cli.js']);
});

test('rng and randomSource: one seeded stream, the same for the same seed', () => {
  const a = rng(7);
  const b = randomSource(7);
  const c = rng(8);
  const first = [a(), a(), a()];
  assert.equal([b.next(), b.next(), b.next()], first);
  assert.not.equal([c(), c(), c()], first);
  for (const value of first) assert.ok(value >= 0 && value < 1);
});

test('tempDir makes a fresh folder and cleanup removes it', async () => {
  const one = await tempDir();
  const two = await tempDir();
  assert.is.not(one.path, two.path);
  assert.ok(existsSync(one.path));
  await one.cleanup();
  await two.cleanup();
  assert.not.ok(existsSync(one.path) || existsSync(two.path));
});

test.run();
