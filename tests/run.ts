/**
 * The runner behind `npm test`: uvu's own CLI flow, plus two guards uvu 0.5 lacks.
 *
 * 1. uvu swallows an error thrown in `test.before` / `test.after` (its suite runner returns from a
 *    `finally`), so a suite whose setup fails reports "(0 / N)" and the run still passes. Here a suite
 *    that ran fewer tests than it declared, without reporting a failure, fails the run.
 * 2. A closing line "N passed, N failed" that CI can read.
 *
 * Usage: node --import tsx tests/run.ts [dir] [file-pattern]
 */
import { pathToFileURL } from 'node:url';
import { parse } from 'uvu/parse';

type SuiteResult = [errors: string | true, ran: number, skipped: number, total: number];
type QueuedSuite = () => Promise<SuiteResult>;
const uvuGlobals = globalThis as unknown as { UVU_DEFER: number; UVU_INDEX: number; UVU_QUEUE: [string | null, ...QueuedSuite[]][] };

const [dir = 'tests', pattern = '\\.test\\.ts$'] = process.argv.slice(2);
const { suites } = await parse(dir, new RegExp(pattern), { cwd: process.cwd() });

uvuGlobals.UVU_DEFER = 1;
const uvu = await import('uvu');
let passed = 0;
let failed = 0;
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
      if (errors === true && ran < total) {
        const message = `  ✘ ${suite.name}: ${total - ran} of ${total} tests never ran — a test.before or test.after hook threw (uvu 0.5 hides the error; move the setup into the test or before.each to see it)`;
        return [message, ran, skipped, total];
      }
      return [errors, ran, skipped, total];
    };
  }
}
await uvu.exec(false);
console.log(`${passed} passed, ${failed} failed`);
