/**
 * Run `setup` once, before the first test, such that an error FAILS the tests. uvu 0.5 swallows an
 * error thrown in `test.before` (the file reports "(0 / N)" and the run still exits 0), but an error
 * in `test.before.each` fails the test it precedes.
 */
export function setupOnce(test: { before: { each(hook: () => unknown): void } }, setup: () => Promise<void>): void {
  let done: Promise<void> | undefined;
  test.before.each(() => (done ??= setup()));
}
