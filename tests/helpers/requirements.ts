/**
 * Tests that need an optional system package (PyTorch for the reference checks; later a Vulkan
 * driver or a browser). Where the package is missing the test is registered as skipped, with the
 * reason and the install command printed; under OSTEO_REQUIRE_REFERENCES=1 (set by .ci/run, which
 * installs every such package) the test runs and fails with that reason instead, so CI never
 * silently loses a check.
 */
import type { Test } from 'uvu';

export interface Requirement {
  /** What is needed, e.g. "PyTorch and torchvision for /usr/bin/python3". */
  name: string;
  /** How to install it, e.g. "apt-get install python3-torch python3-torchvision". */
  install: string;
  /** null when usable, else why not. Called at most once per process (memoised by requirementStatus). */
  probe(): string | null;
}

/**
 * Whether a missing requirement fails its tests instead of skipping them. Read at each registration,
 * not once at import, so the helper's own test can exercise both modes in one process.
 */
export function requireOptional(): boolean {
  return process.env['OSTEO_REQUIRE_REFERENCES'] === '1';
}

const statuses = new Map<Requirement, string | null>();
/** The tests skipped so far, by the requirement they lack: tests/run.ts repeats them above its closing line. */
const skips = new Map<Requirement, string[]>();

/** null when the requirement is met, else the reason (probed once per process). */
export function requirementStatus(requirement: Requirement): string | null {
  if (!statuses.has(requirement)) statuses.set(requirement, requirement.probe());
  return statuses.get(requirement)!;
}

/** "X is missing (why); install it with: cmd" — the one wording of a skip reason and of its failure. */
export function missingMessage(requirement: Requirement): string | null {
  const missing = requirementStatus(requirement);
  return missing === null ? null : `${requirement.name} is missing (${missing}); install it with: ${requirement.install}`;
}

/** The tests registered as skipped in this process, by requirement, with the reason each was skipped. */
export function skippedTests(): { requirement: Requirement; reason: string; tests: string[] }[] {
  return [...skips].map(([requirement, tests]) => ({ requirement, reason: missingMessage(requirement)!, tests }));
}

/** Drops `requirement`'s skips from that list: the helper's own test registers fake ones that no suite runs. */
export function forgetSkips(requirement: Requirement): void {
  skips.delete(requirement);
}

type TestBody = Parameters<Test>[1];
/** The part of a uvu suite that testWith uses (a plain recorder will do in the helper's own test). */
export type Suite = Pick<Test, 'skip'> & ((name: string, body: TestBody) => void);

/**
 * `suite(name, body)` when `requirement` is met; otherwise `suite.skip` with the reason printed, or,
 * under OSTEO_REQUIRE_REFERENCES=1, a test that fails naming what is missing and how to install it.
 */
export function testWith(requirement: Requirement, suite: Suite, name: string, body: TestBody): void {
  const message = missingMessage(requirement);
  if (message === null) {
    suite(name, body);
    return;
  }
  if (requireOptional()) {
    suite(name, () => {
      throw new Error(`${message} (OSTEO_REQUIRE_REFERENCES=1 makes this a failure, not a skip)`);
    });
    return;
  }
  // Printed once per requirement as the suites load (uvu's own output never names a skipped test).
  if (!skips.has(requirement)) {
    skips.set(requirement, []);
    process.stderr.write(`skipping tests: ${message}\n`);
  }
  skips.get(requirement)!.push(name);
  suite.skip(name, body);
}
