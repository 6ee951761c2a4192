import * as assert from 'uvu/assert';
import { UserError } from '../../src/util/index.js';

/** Await `work`, which must fail with a UserError; returns its message for the caller's patterns. */
export async function refusal(work: Promise<unknown>): Promise<string> {
  try {
    await work;
  } catch (error) {
    assert.instance(error, UserError, `expected a UserError, got ${(error as Error).stack}`);
    return (error as Error).message;
  }
  assert.unreachable('expected a refusal');
  return '';
}
