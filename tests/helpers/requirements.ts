/**
 * Tests that need an optional system package (PyTorch for the reference checks; later a Vulkan
 * driver or a browser). Where the package is missing the test is registered as skipped, with the
 * reason and the install command printed once; under OSTEO_REQUIRE_REFERENCES=1 (set by .ci/run,
 * which installs every such package) the test runs and fails with that reason instead, so CI never
 * silently loses a check.
 */
import type { Test } from 'uvu';

export interface Requirement {
  /** What is needed, e.g. "PyTorch 1.13 + torchvision for /usr/bin/python3". */
  name: string;
  /** How to install it, e.g. "apt-get install python3-torch python3-torchvision". */
  install: string;
  /** null when usable, else why not. Called at most once (memoised by requirementStatus). */
  probe(): string | null;
}

export const requireOptional = process.env.OSTEO_REQUIRE_REFERENCES === '1';

const statuses = new Map<Requirement, string | null>();
const announced = new Set<Requirement>();

/** null when the requirement is met, else the reason (probed once per process). */
export function requirementStatus(requirement: Requirement): string | null {
  if (!statuses.has(requirement)) statuses.set(requirement, requirement.probe());
  return statuses.get(requirement)!;
}

type TestBody = Parameters<Test>[1];

/**
 * `suite(name, body)` when `requirement` is met; otherwise `suite.skip` with the reason, or — under
 * OSTEO_REQUIRE_REFERENCES=1 — a test that fails naming what is missing and how to install it.
 */
export function testWith(requirement: Requirement, suite: Test, name: string, body: TestBody): void {
  const missing = requirementStatus(requirement);
  if (missing === null) {
    suite(name, body);
    return;
  }
  const message = `${requirement.name} is missing (${missing}); install it with: ${requirement.install}`;
  if (requireOptional) {
    suite(name, () => {
      throw new Error(`${message} — OSTEO_REQUIRE_REFERENCES=1 makes this a failure`);
    });
    return;
  }
  if (!announced.has(requirement)) {
    announced.add(requirement);
    process.stderr.write(`\nskipping tests that need ${message}\n`);
  }
  suite.skip(`${name} [skipped: needs ${requirement.name}]`, body);
}
