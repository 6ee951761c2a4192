/**
 * testWith against a recording fake suite (not uvu's global runner, whose skip counter cannot be read
 * back): a met requirement registers the test as it is; a missing one registers a skip, names it and
 * prints the reason with the install command; under OSTEO_REQUIRE_REFERENCES=1 it registers a test
 * that fails with that reason instead.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { forgetSkips, requirementStatus, skippedTests, testWith, type Requirement, type Suite } from './requirements.js';

type Body = Parameters<Suite>[1];

/** A suite function that records what testWith registers instead of running anything. */
function recordingSuite() {
  const tests: { name: string; body: Body }[] = [];
  const skipped: string[] = [];
  const suite = Object.assign((name: string, body: Body) => void tests.push({ name, body }), {
    skip: (name: string) => void skipped.push(name),
  }) as unknown as Suite;
  return { suite, tests, skipped };
}

/** A requirement whose probe gives `reason` (null: met) and counts how often it was asked. */
function fakeRequirement(reason: string | null) {
  const requirement: Requirement & { probes: number } = {
    name: 'the frobnicator',
    install: 'apt-get install frobnicator',
    probes: 0,
    probe() {
      requirement.probes++;
      return reason;
    },
  };
  return requirement;
}

/** Runs `body` with OSTEO_REQUIRE_REFERENCES set to `value` (or unset), and stderr captured. */
function withEnvironment(value: string | undefined, body: () => void): string {
  const saved = process.env['OSTEO_REQUIRE_REFERENCES'];
  const write = process.stderr.write;
  let printed = '';
  process.stderr.write = ((chunk: string | Uint8Array) => ((printed += String(chunk)), true)) as typeof process.stderr.write;
  if (value === undefined) delete process.env['OSTEO_REQUIRE_REFERENCES'];
  else process.env['OSTEO_REQUIRE_REFERENCES'] = value;
  try {
    body();
  } finally {
    process.stderr.write = write;
    if (saved === undefined) delete process.env['OSTEO_REQUIRE_REFERENCES'];
    else process.env['OSTEO_REQUIRE_REFERENCES'] = saved;
  }
  return printed;
}

test('a met requirement registers the test itself, and is probed once', () => {
  const requirement = fakeRequirement(null);
  const { suite, tests, skipped } = recordingSuite();
  let ran = false;
  const body = () => {
    ran = true;
  };
  const printed = withEnvironment('1', () => {
    testWith(requirement, suite, 'needs the frobnicator', body);
    testWith(requirement, suite, 'needs it too', body);
  });
  assert.equal(tests.map((t) => t.name), ['needs the frobnicator', 'needs it too']);
  assert.is(tests[0]!.body, body, 'the body is registered unchanged');
  assert.equal(skipped, []);
  assert.is(printed, '');
  assert.is(requirement.probes, 1, 'the probe is memoised');
  assert.not.ok(ran, 'registering runs nothing');
});

test('a missing requirement skips the test, without running it, and prints the reason and the install command once', () => {
  const requirement = fakeRequirement("ModuleNotFoundError: No module named 'frob'");
  const { suite, tests, skipped } = recordingSuite();
  let ran = false;
  const printed = withEnvironment(undefined, () => {
    testWith(requirement, suite, 'first', () => void (ran = true));
    testWith(requirement, suite, 'second', () => void (ran = true));
  });
  assert.equal(tests, [], 'nothing registered to run');
  assert.equal(skipped, ['first', 'second']);
  assert.not.ok(ran);
  assert.is(printed.split('\n').filter(Boolean).length, 1, `printed once: ${printed}`);
  assert.match(printed, "the frobnicator is missing (ModuleNotFoundError: No module named 'frob')");
  assert.match(printed, 'install it with: apt-get install frobnicator');
  const listed = skippedTests().find((entry) => entry.requirement === requirement);
  assert.ok(listed, 'tests/run.ts can list the skip');
  assert.equal(listed!.tests, ['first', 'second']);
  assert.match(listed!.reason, 'apt-get install frobnicator');
  forgetSkips(requirement);
  assert.not.ok(skippedTests().some((entry) => entry.requirement === requirement), 'the summary of the real run does not list it');
});

test('under OSTEO_REQUIRE_REFERENCES=1 a missing requirement is a failing test naming what is missing', async () => {
  const requirement = fakeRequirement('No module named frob');
  const { suite, tests, skipped } = recordingSuite();
  let ran = false;
  const printed = withEnvironment('1', () => testWith(requirement, suite, 'needs the frobnicator', () => void (ran = true)));
  assert.equal(skipped, [], 'not skipped');
  assert.equal(tests.map((t) => t.name), ['needs the frobnicator']);
  assert.is(printed, '');
  let failure: unknown;
  try {
    await tests[0]!.body({ __suite__: '', __test__: 'needs the frobnicator' });
  } catch (error) {
    failure = error;
  }
  assert.instance(failure, Error, 'the registered test fails');
  assert.match((failure as Error).message, 'the frobnicator is missing (No module named frob)');
  assert.match((failure as Error).message, 'apt-get install frobnicator');
  assert.match((failure as Error).message, 'OSTEO_REQUIRE_REFERENCES=1');
  assert.not.ok(ran, 'the real body never runs');
  assert.not.ok(skippedTests().some((entry) => entry.requirement === requirement), 'and it is not listed as skipped');
});

test('the probe result is kept per requirement', () => {
  const met = fakeRequirement(null);
  const missing = fakeRequirement('absent');
  assert.is(requirementStatus(met), null);
  assert.is(requirementStatus(missing), 'absent');
  assert.is(requirementStatus(missing), 'absent');
  assert.is(met.probes + missing.probes, 2);
});

test.run();
