/** The one way tests expect a rejection: `rejection` checks what was thrown and returns it; `refusal` is its common case, a UserError. */
import * as assert from 'uvu/assert';
import { UserError } from '../../src/util/index.js';

type ErrorClass = abstract new (...args: never[]) => Error;
/** An error class (the error must be an instance of one of those given), a pattern its message must match, or a predicate it must pass. */
export type Expectation = ErrorClass | RegExp | ((error: Error) => boolean);

const isErrorClass = (expectation: Expectation): expectation is ErrorClass =>
  typeof expectation === 'function' && (expectation === Error || expectation.prototype instanceof Error);

/**
 * Await `work` (a promise, or a function whose call or promise may throw), which must fail; every
 * expectation must hold for what it threw. Returns the error, for the caller's further checks.
 */
export async function rejection(work: Promise<unknown> | (() => unknown), ...expected: Expectation[]): Promise<Error> {
  let thrown: unknown;
  let threw = false;
  try {
    await (typeof work === 'function' ? work() : work);
  } catch (error) {
    thrown = error;
    threw = true;
  }
  if (!threw) assert.unreachable(`expected a rejection${expected.length > 0 ? ` (${expected.map(String).join(', ')})` : ''}, but it resolved`);
  const error = thrown as Error;
  const classes = expected.filter(isErrorClass);
  if (classes.length > 0) {
    assert.ok(classes.some((kind) => thrown instanceof kind), `expected a ${classes.map((kind) => kind.name).join(' or ')}, got ${error?.stack ?? String(thrown)}`);
  }
  for (const expectation of expected) {
    if (expectation instanceof RegExp) assert.match(error?.message ?? String(thrown), expectation);
    else if (!isErrorClass(expectation)) assert.ok(expectation(error), `unexpected rejection: ${error?.stack ?? String(thrown)}`);
  }
  return error;
}

/** Await `work`, which must fail with a UserError whose message matches every pattern; returns the message. */
export async function refusal(work: Promise<unknown> | (() => unknown), ...patterns: RegExp[]): Promise<string> {
  return (await rejection(work, UserError, ...patterns)).message;
}
