/**
 * Every relative link in README.md, ARCHITECTURE.md, CONTRIBUTING.md and docs/*.md resolves: the file
 * exists, and a `#fragment` names a heading of the file it points to (GitHub's heading anchors).
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, normalize } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';

const documents = ['README.md', 'ARCHITECTURE.md', 'CONTRIBUTING.md', ...readdirSync('docs').filter((name) => name.endsWith('.md')).map((name) => `docs/${name}`)];

/** The text outside fenced code blocks and inline code spans, where a link is a link. */
function prose(markdown: string): string {
  return markdown.replace(/^```[\s\S]*?^```/gm, '').replace(/`[^`\n]*`/g, '');
}

/** The targets of `[text](target)` and `![alt](target)` links. */
function linkTargets(markdown: string): string[] {
  return [...prose(markdown).matchAll(/!?\[[^\]]*\]\(([^)\s]+)(?:\s+"[^"]*")?\)/g)].map((match) => match[1]!);
}

/** GitHub's anchor of a heading: lower case, punctuation dropped, spaces as hyphens; repeats get -1, -2, … */
function headingAnchors(markdown: string): Set<string> {
  const anchors = new Set<string>();
  const seen = new Map<string, number>();
  for (const match of markdown.replace(/^```[\s\S]*?^```/gm, '').matchAll(/^#{1,6} +(.+?) *#* *$/gm)) {
    const slug = match[1]!
      .toLowerCase()
      .replace(/[^\p{L}\p{N} _-]/gu, '')
      .replace(/ /g, '-');
    const count = seen.get(slug) ?? 0;
    seen.set(slug, count + 1);
    anchors.add(count === 0 ? slug : `${slug}-${count}`);
  }
  return anchors;
}

/** Why `target`, linked from `document`, does not resolve; undefined when it does. */
function brokenLink(document: string, target: string, read: (file: string) => string = (file) => readFileSync(file, 'utf8')): string | undefined {
  if (/^[a-z][a-z0-9+.-]*:/i.test(target)) return undefined; // https:, mailto: — not a file in this repository
  const [path, fragment] = target.split('#', 2) as [string, string | undefined];
  const file = path === '' ? document : normalize(join(dirname(document), decodeURI(path)));
  if (!existsSync(file)) return `${document}: ${target} — ${file} does not exist`;
  if (fragment === undefined) return undefined;
  if (!statSync(file).isFile() || !file.endsWith('.md')) return `${document}: ${target} — a #fragment needs a Markdown file`;
  if (!headingAnchors(read(file)).has(fragment)) return `${document}: ${target} — ${file} has no heading #${fragment}`;
  return undefined;
}

test('every relative link and heading anchor in the documentation resolves', () => {
  let checked = 0;
  const broken: string[] = [];
  for (const document of documents) {
    for (const target of linkTargets(readFileSync(document, 'utf8'))) {
      checked += 1;
      const problem = brokenLink(document, target);
      if (problem !== undefined) broken.push(problem);
    }
  }
  assert.equal(broken, []);
  assert.ok(checked > 20, `only ${checked} links found`);
});

test('the check finds links outside code, GitHub anchors, and reports a missing file or heading', () => {
  assert.equal(linkTargets('see [a](docs/a.md), ![b](b.png "t") and `[c](c.md)`\n```\n[d](d.md)\n```\n'), ['docs/a.md', 'b.png']);
  assert.ok(headingAnchors('# Browser viewer (`export --format web`, `osteo serve`)\n## A tour\n## A tour\n').has('browser-viewer-export---format-web-osteo-serve'));
  assert.ok(headingAnchors('## A tour\n## A tour\n').has('a-tour-1'));
  assert.match(brokenLink('README.md', 'docs/no-such-file.md') ?? '', /does not exist/);
  assert.match(brokenLink('README.md', 'docs/data.md#no-such-heading') ?? '', /has no heading #no-such-heading/);
  assert.is(brokenLink('README.md', '#a-tour'), undefined);
  assert.is(brokenLink('README.md', 'https://example.org/x#y'), undefined);
});

test.run();
