/**
 * The runner behind `npm test`: uvu's own CLI flow, plus what uvu 0.5 lacks.
 *
 * 1. uvu swallows an error thrown in `test.before` / `test.after` (its suite runner returns from a
 *    `finally`), so a suite whose setup fails reports "(0 / N)" and the run still passes. Here a suite
 *    that ran fewer tests than it declared, without reporting a failure, fails the run.
 * 2. A closing line "N passed, N failed, N skipped" that CI can read, preceded by why tests were
 *    skipped (a missing optional package, see tests/helpers/requirements.ts) and how to install it.
 *
 * Usage: node --import tsx tests/run.ts [dir] [file-pattern]
 */
import { pathToFileURL } from 'node:url';
import { parse } from 'uvu/parse';
import { skippedTests } from './helpers/requirements.js';

/**
 * What uvu's suite runner returns. `total` counts only the tests that were to run: a `test.skip`
 * registration is counted in `skipped` alone (uvu keeps no body for it), and with `test.only` the
 * tests left out are counted in `skipped` too. So `total - ran` is the tests that failed or never ran.
 */
type SuiteResult = [errors: string | true, ran: number, skipped: number, total: number];
type QueuedSuite = () => Promise<SuiteResult>;
const uvuGlobals = globalThis as unknown as { UVU_DEFER: number; UVU_INDEX: number; UVU_QUEUE: [string | null, ...QueuedSuite[]][] };

const [dir = 'tests', pattern = '\\.test\\.ts$'] = process.argv.slice(2);
const { suites } = await parse(dir, new RegExp(pattern), { cwd: process.cwd() });

uvuGlobals.UVU_DEFER = 1;
const uvu = await import('uvu');
let passed = 0;
let failed = 0;
let skippedCount = 0;
for (const [index, suite] of suites.entries()) {
  uvuGlobals.UVU_INDEX = index;
  uvuGlobals.UVU_QUEUE.push([suite.name]);
  await import(pathToFileURL(suite.file).href);
  const group = uvuGlobals.UVU_QUEUE[index]!;
  for (let i = 1; i < group.length; i++) {
    const runSuite = group[i] as QueuedSuite;
    group[i] = async () => {
      const [errors, ran, skipped, total] = await runSuite();
      passed += ran;
      failed += total - ran;
      skippedCount += skipped;
      if (errors === true && ran < total) {
        const message = `  ✘ ${suite.name}: ${total - ran} of ${total} tests never ran — a test.before or test.after hook threw (uvu 0.5 hides the error; move the setup into the test or before.each to see it)`;
        return [message, ran, skipped, total];
      }
      return [errors, ran, skipped, total];
    };
  }
}
await uvu.exec(false);
for (const { reason, tests } of skippedTests()) {
  console.log(`skipped ${tests.length} test${tests.length === 1 ? '' : 's'}: ${reason}`);
  for (const name of tests) console.log(`  - ${name}`);
}
console.log(`${passed} passed, ${failed} failed, ${skippedCount} skipped`);
