/**
 * Stopping a command as a scheduler or `timeout` does: start it, wait for a line of its progress on
 * stderr, send it a signal, and collect how it ended.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';

export interface SignalledRun {
  /** Whether the pattern showed and the signal was sent. */
  sent: boolean;
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/**
 * Run `command args…` and send `signal` to that first process once its stderr matches `when` (at
 * most once). For a scheduler's wrapper, `command` is bash and `args` its `-c` script.
 */
export async function signalWhen(command: string, args: readonly string[], when: RegExp, signal: NodeJS.Signals, options: { cwd?: string } = {}): Promise<SignalledRun> {
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], cwd: options.cwd });
  let stdout = '';
  let stderr = '';
  let sent = false;
  child.stdout.on('data', (chunk: Buffer) => {
    stdout += chunk.toString();
  });
  child.stderr.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
    if (!sent && when.test(stderr)) {
      sent = true;
      child.kill(signal);
    }
  });
  const [code, ended] = (await once(child, 'close')) as [number | null, NodeJS.Signals | null];
  return { sent, code, signal: ended, stdout, stderr };
}
