/**
 * The room rules of ARCHITECTURE.md, checked over the TypeScript import graph of src/: a room imports
 * only rooms below it (never sideways, never up, so never in a circle), and only through their
 * index.ts. A new import that breaks a rule fails here, naming the file and the import. And the
 * backend is a handle passed down: no code outside backend/ calls currentBackend().
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import ts from 'typescript';
import { test } from 'uvu';
import * as assert from 'uvu/assert';

const src = resolve('src');

/** Top to bottom; rooms on one line may not import each other. */
export const roomLayers: readonly (readonly string[])[] = [
  ['cli'],
  ['commands'],
  ['pipeline'],
  ['eval', 'train'],
  ['engine'],
  ['runs'],
  ['weights', 'config'],
  ['report'],
  ['models'],
  ['data'],
  ['backend'],
  ['util'],
];
const depth = new Map(roomLayers.flatMap((rooms, level) => rooms.map((room) => [room, level] as const)));

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? sourceFiles(path) : name.endsWith('.ts') ? [path] : [];
  });
}

const roomOf = (file: string) => relative(src, file).split('/')[0]!.replace(/\.ts$/, '');

interface Import {
  from: string;
  to: string;
  line: number;
}

/** Every relative import, export-from and import() type of a file, resolved to a .ts path. */
function importsOf(file: string): Import[] {
  const text = readFileSync(file, 'utf8');
  const source = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true);
  const found: Import[] = [];
  const add = (node: ts.Node, specifier: string) => {
    if (!specifier.startsWith('.')) return;
    const to = resolve(dirname(file), specifier.replace(/\.js$/, '.ts'));
    found.push({ from: file, to, line: source.getLineAndCharacterOfPosition(node.getStart()).line + 1 });
  };
  const visit = (node: ts.Node) => {
    if ((ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) && node.moduleSpecifier && ts.isStringLiteral(node.moduleSpecifier)) add(node, node.moduleSpecifier.text);
    if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument) && ts.isStringLiteral(node.argument.literal)) add(node, node.argument.literal.text);
    if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword && node.arguments[0] && ts.isStringLiteral(node.arguments[0])) add(node, node.arguments[0].text);
    ts.forEachChild(node, visit);
  };
  visit(source);
  return found;
}

const crossRoom = sourceFiles(src)
  .flatMap(importsOf)
  .filter((edge) => roomOf(edge.from) !== roomOf(edge.to));
/** Imports that go sideways or up, and imports that reach past another room's index.ts. */
function violations(edges: readonly Import[]): { upward: Import[]; pastIndex: Import[] } {
  return {
    upward: edges.filter((edge) => depth.get(roomOf(edge.to))! <= depth.get(roomOf(edge.from))!),
    pastIndex: edges.filter((edge) => !(roomOf(edge.from) === 'cli' && roomOf(edge.to) === 'commands') && relative(src, edge.to).split('/').slice(1).join('/') !== 'index.ts'),
  };
}
const found = violations(crossRoom);
const where = (edge: Import) => `${relative(process.cwd(), edge.from)}:${edge.line} → ${relative(process.cwd(), edge.to)}`;

/** Calls of a function named `currentBackend` (a global read of the selected backend) in `file`. */
function currentBackendCalls(file: string, text = readFileSync(file, 'utf8')): number[] {
  const source = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true);
  const lines: number[] = [];
  const visit = (node: ts.Node) => {
    if (ts.isCallExpression(node)) {
      const callee = node.expression;
      const name = ts.isIdentifier(callee) ? callee.text : ts.isPropertyAccessExpression(callee) ? callee.name.text : undefined;
      if (name === 'currentBackend') lines.push(source.getLineAndCharacterOfPosition(node.getStart()).line + 1);
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return lines;
}

test('every top-level entry of src/ is a known room', () => {
  const unknown = readdirSync(src)
    .map((name) => name.replace(/\.ts$/, ''))
    .filter((room) => !depth.has(room));
  assert.equal(unknown, [], `rooms missing from the layer table: ${unknown.join(', ')}`);
});

test('rooms import only rooms below them (no sideways or upward import, so no cycle)', () => {
  assert.equal(found.upward.map(where), []);
});

test("another room is entered through its index.ts (cli's subcommand files excepted)", () => {
  assert.equal(found.pastIndex.map(where), []);
});

test('every room index.ts opens with a one-line header saying what the room owns', () => {
  // commands/ has no index: cli.ts registers each subcommand file.
  for (const room of [...depth.keys()].filter((room) => room !== 'commands' && room !== 'cli')) {
    const index = join(src, room, 'index.ts');
    const text = readFileSync(index, 'utf8');
    assert.match(text, new RegExp(`^/\\*\\*[\\s*]*${room}: `), `${relative(process.cwd(), index)} should open with "/** ${room}: what it owns"`);
  }
});

test('eval and train sit side by side: eval imports nothing from train (inference is the engine room\'s)', () => {
  assert.is(depth.get('eval'), depth.get('train'));
  assert.ok(depth.get('engine')! > depth.get('train')!, 'engine is below train and eval');
  const evalToTrain = crossRoom.filter((edge) => roomOf(edge.from) === 'eval' && roomOf(edge.to) === 'train');
  assert.equal(evalToTrain.map(where), []);
});

test('the backend is passed down as a handle: no currentBackend() call outside src/backend/', () => {
  const calls = sourceFiles(src)
    .filter((file) => roomOf(file) !== 'backend')
    .flatMap((file) => currentBackendCalls(file).map((line) => `${relative(process.cwd(), file)}:${line}`));
  assert.equal(calls, []);
});

test('the checks catch planted violations (they are not vacuous)', () => {
  assert.ok(crossRoom.length > 50, `only ${crossRoom.length} cross-room imports found`);
  const up: Import = { from: join(src, 'util', 'fs.ts'), to: join(src, 'train', 'index.ts'), line: 1 };
  const sideways: Import = { from: join(src, 'weights', 'pth.ts'), to: join(src, 'config', 'index.ts'), line: 1 };
  const intoInternals: Import = { from: join(src, 'train', 'train.ts'), to: join(src, 'data', 'loader.ts'), line: 1 };
  const planted = violations([up, sideways, intoInternals]);
  assert.equal(planted.upward, [up, sideways]);
  assert.equal(planted.pastIndex, [intoInternals]);
  const evalToTrain: Import = { from: join(src, 'eval', 'inference.ts'), to: join(src, 'train', 'index.ts'), line: 1 };
  assert.equal(violations([evalToTrain]).upward, [evalToTrain], 'an eval → train import is caught as sideways');
  assert.equal(currentBackendCalls('planted.ts', "import { currentBackend } from '../backend/index.js';\nconst a = currentBackend()?.capabilities;\nconst b = backend.currentBackend();\n"), [2, 3]);
  assert.equal(currentBackendCalls('planted.ts', 'const currentBackend = 1; useBackend(currentBackend);\n'), [], 'a name that is not called is not a call');
});

test.run();
