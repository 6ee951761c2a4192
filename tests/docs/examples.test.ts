/**
 * The scheduler files run osteo so that the scheduler's SIGTERM reaches it: each `osteo cv` is
 * `exec node_modules/.bin/osteo cv …`, which makes osteo the process the scheduler signals (a
 * `bash -c` that does not exec, as PID 1 in a pod, passes no signal on; npx neither). What osteo then
 * does with the signal is tests/pipeline/stop-signals.test.ts.
 */
import { readFileSync } from 'node:fs';
import { test } from 'uvu';
import * as assert from 'uvu/assert';

const schedulerFiles = ['examples/cv-kubernetes.yaml', 'examples/cv-slurm.sh', '.github/workflows/cv.yml'];

/** The file without its comments (`#` to the end of a line, outside `${{ … }}` and `$((…))`). */
function withoutComments(text: string): string {
  return text
    .split('\n')
    .map((line) => line.replace(/(^|\s)#(?!\{).*$/, ''))
    .join('\n');
}

for (const file of schedulerFiles) {
  test(`${file}: every osteo cv runs as \`exec node_modules/.bin/osteo cv\`, and nothing goes through npx`, () => {
    const code = withoutComments(readFileSync(file, 'utf8'));
    assert.not.match(code, /\bnpx\b/, 'npx neither passes signals on nor finds osteo outside the repository');
    const runs = [...code.matchAll(/(\S+\s+)?(\S*)osteo cv\b/g)];
    assert.ok(runs.length > 0, `${file} runs osteo cv`);
    for (const [whole, before, path] of runs) assert.equal([before?.trim(), path], ['exec', 'node_modules/.bin/'], `not exec'd: ${whole}`);
  });
}

test.run();
