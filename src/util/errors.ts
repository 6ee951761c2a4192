/**
 * The project's error vocabulary (STYLE.md §9). The CLI prints the message of a UserError or a
 * DataError without a stack and exits non-zero; any other error is a bug and keeps its stack.
 */

/** Bad input, option or configuration: the message says what to do about it. */
export class UserError extends Error {
  override name = 'UserError';
}

/** A data file that cannot be used: the message names the file and the reason. */
export class DataError extends Error {
  override name = 'DataError';
  constructor(
    readonly file: string,
    readonly reason: string,
  ) {
    super(`${file}: ${reason}`);
  }
}

export function isUserFacing(error: unknown): error is UserError | DataError {
  return error instanceof UserError || error instanceof DataError;
}

export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
