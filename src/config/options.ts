/**
 * Option tables: one record per configuration key that feeds the config's TypeScript type, its zod
 * schema, the command-line flags and the docs (ARCHITECTURE.md, *One record per option*), so the four cannot drift apart.
 *
 * A table is a nested object whose leaves are `option(...)` (has a default), `optional(...)` (may be
 * absent), `required(...)` (must be given) or `list(...)` (a required array of objects, each described
 * by a flat table of its own). Keys are addressed with dots (`optimizer.lr`). Values arrive in layers —
 * built-in defaults, a config file, flags, `--set key=value` — and every value remembers where it came
 * from, so a validation error names both the key and the file or flag that set it.
 */
import { z } from 'zod';
import { UserError } from '../util/index.js';

export interface OptionSpec<S extends z.ZodType = z.ZodType, Present extends boolean = boolean> {
  readonly kind: 'option';
  readonly schema: S;
  /** Whether a validated config always holds the key: it has a default, or it is required. */
  readonly present: Present;
  readonly hasDefault: boolean;
  readonly default: z.output<S> | undefined;
  readonly help: string;
  /** list(...): the flat table that describes each element (for the docs; the schema already holds it). */
  readonly items?: ListItems;
  /** commander flag syntax, e.g. '--epochs <n>'; absent: set through a config file or --set only. */
  readonly flag?: string;
  /** May differ when a run is resumed (where it runs, how long): everything else must match the run. */
  readonly runtime?: boolean;
}

export interface OptionTable {
  readonly [key: string]: OptionSpec | OptionTable;
}

/** The keys of one element of a list: leaves only, so element defaults can live in the element schema. */
export interface ListItems {
  readonly [key: string]: OptionSpec;
}

interface Extra {
  flag?: string;
  runtime?: boolean;
}

export function option<S extends z.ZodType>(schema: S, defaultValue: z.output<S>, help: string, extra: Extra = {}): OptionSpec<S, true> & { readonly default: z.output<S> } {
  return { kind: 'option', schema, present: true, hasDefault: true, default: defaultValue, help, ...extra };
}

export function optional<S extends z.ZodType>(schema: S, help: string, extra: Extra = {}): OptionSpec<S, false> {
  return { kind: 'option', schema, present: false, hasDefault: false, default: undefined, help, ...extra };
}

/** A key without a default that every config must set (a generated flag is mandatory). */
export function required<S extends z.ZodType>(schema: S, help: string, extra: Extra = {}): OptionSpec<S, true> {
  return { kind: 'option', schema, present: true, hasDefault: false, default: undefined, help, ...extra };
}

/**
 * A required array of strict objects, each described by `items` (e.g. a pipeline's models). The
 * element schema fills the element defaults, and a schema issue inside an element keeps its full
 * path (`models.0.model`), so errors name the element's key and the origin of the list.
 */
export function list<T extends ListItems>(items: T, help: string, extra: Extra & { min?: number } = {}): OptionSpec<z.ZodArray<z.ZodType<ConfigOf<T>>>, true> {
  const shape: Record<string, z.ZodType> = {};
  for (const [key, spec] of Object.entries(items)) {
    shape[key] = spec.hasDefault ? spec.schema.default(spec.default) : spec.present ? spec.schema : spec.schema.optional();
  }
  const { min = 0, ...rest } = extra;
  const schema = z.array(z.strictObject(shape) as unknown as z.ZodType<ConfigOf<T>>).min(min);
  return { kind: 'option', schema, present: true, hasDefault: false, default: undefined, help, items, ...rest };
}

/** The same keys with no flags: a table reused inside a config file whose command does not expose them. */
export function withoutFlags<T extends OptionTable>(table: T): T {
  return Object.fromEntries(Object.entries(table).map(([key, node]) => [key, isOption(node) ? { ...node, flag: undefined } : withoutFlags(node)])) as T;
}

/** The config type a table describes. */
export type ConfigOf<T extends OptionTable> = {
  -readonly [K in keyof T]: T[K] extends OptionSpec<infer S, infer Present>
    ? Present extends true
      ? z.output<S>
      : z.output<S> | undefined
    : T[K] extends OptionTable
      ? ConfigOf<T[K]>
      : never;
};

function isOption(node: OptionSpec | OptionTable): node is OptionSpec {
  return (node as OptionSpec).kind === 'option';
}

/** Every leaf with its dotted key, in table order. */
export function optionEntries(table: OptionTable, prefix = ''): [string, OptionSpec][] {
  const out: [string, OptionSpec][] = [];
  for (const [key, node] of Object.entries(table)) {
    const dotted = prefix + key;
    if (isOption(node)) out.push([dotted, node]);
    else out.push(...optionEntries(node, `${dotted}.`));
  }
  return out;
}

/** The strict zod schema of a complete config (unknown keys are errors at every level). */
export function schemaOf(table: OptionTable): z.ZodObject {
  const shape: Record<string, z.ZodType> = {};
  for (const [key, node] of Object.entries(table)) {
    shape[key] = isOption(node) ? (node.present ? node.schema : node.schema.optional()) : schemaOf(node);
  }
  return z.strictObject(shape);
}

/** A value and where it came from ('default', a file path, '--epochs', '--set optimizer.lr'). */
export interface Sourced {
  value: unknown;
  origin: string;
  /** 0 for defaults, then one more for every layer merged on top (file, flags, --set). */
  layer: number;
}

/** Flat dotted-key values being merged, layer by layer. */
export class OptionValues {
  private readonly values = new Map<string, Sourced>();
  private readonly specs: Map<string, OptionSpec>;
  /** The files merged so far: where a required key that nobody set should have been. */
  private readonly mergedOrigins: string[] = [];
  private layer = 0;

  constructor(readonly table: OptionTable) {
    this.specs = new Map(optionEntries(table));
    for (const [key, spec] of this.specs) if (spec.hasDefault) this.values.set(key, { value: spec.default, origin: 'default', layer: 0 });
  }

  /** Values set from now on belong to a new, later layer. */
  nextLayer(): void {
    this.layer += 1;
  }

  keys(): string[] {
    return [...this.specs.keys()];
  }

  spec(key: string): OptionSpec {
    const spec = this.specs.get(key);
    if (!spec) throw new UserError(`unknown config key "${key}"; known keys: ${this.keys().join(', ')}`);
    return spec;
  }

  get(key: string): Sourced | undefined {
    return this.values.get(key);
  }

  /** Set one key; null or undefined unsets an optional key (and restores a default). */
  set(key: string, value: unknown, origin: string): void {
    const spec = this.spec(key);
    if (value === null || value === undefined) {
      if (spec.hasDefault) this.values.set(key, { value: spec.default, origin, layer: this.layer });
      else this.values.delete(key);
      return;
    }
    this.values.set(key, { value, origin, layer: this.layer });
  }

  /** Merge a nested object (a config file's content): unknown keys are errors naming the key and `origin`. */
  merge(layer: unknown, origin: string, node: OptionTable = this.table, prefix = ''): void {
    if (prefix === '' && !this.mergedOrigins.includes(origin)) this.mergedOrigins.push(origin);
    if (typeof layer !== 'object' || layer === null || Array.isArray(layer)) {
      throw new UserError(`${origin}: ${prefix ? `"${prefix.slice(0, -1)}" must be an object` : 'a config must be a JSON object'}`);
    }
    for (const [key, value] of Object.entries(layer)) {
      const child = node[key];
      const dotted = prefix + key;
      if (child === undefined) {
        const siblings = Object.keys(node).map((k) => prefix + k);
        throw new UserError(`${origin}: unknown key "${dotted}" (keys here: ${siblings.join(', ')})`);
      }
      if (isOption(child)) this.set(dotted, value, origin);
      else this.merge(value, origin, child, `${dotted}.`);
    }
  }

  /** The nested object of the current values. */
  nested(): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    for (const [key, { value }] of this.values) {
      const parts = key.split('.');
      let node = out;
      for (const part of parts.slice(0, -1)) node = (node[part] ??= {}) as Record<string, unknown>;
      node[parts.at(-1)!] = value;
    }
    // Groups whose leaves are all unset still exist, so the schema sees every level.
    const fill = (table: OptionTable, target: Record<string, unknown>): void => {
      for (const [key, child] of Object.entries(table)) {
        if (!isOption(child)) fill(child, (target[key] ??= {}) as Record<string, unknown>);
      }
    };
    fill(this.table, out);
    return out;
  }

  /**
   * The origin of the value at a schema issue's path: the longest dotted prefix that is a key (a path
   * below a key points inside its value, e.g. `models.0.model` in the list `models`). A key nobody set
   * is "missing" from the files merged so far.
   */
  originOf(path: readonly PropertyKey[]): { key: string; origin: string; value: unknown; missing: boolean } {
    const parts = path.map(String);
    for (let n = parts.length; n > 0; n--) {
      const key = parts.slice(0, n).join('.');
      if (this.specs.has(key)) {
        const sourced = this.values.get(key);
        let value = sourced?.value;
        for (const part of parts.slice(n)) value = typeof value === 'object' && value !== null ? (value as Record<string, unknown>)[part] : undefined;
        const missing = sourced === undefined && n === parts.length;
        const unsetIn = this.mergedOrigins.length > 0 ? this.mergedOrigins.join(', ') : (longFlag(this.specs.get(key)!) ?? 'config');
        return { key: parts.join('.'), origin: sourced?.origin ?? unsetIn, value, missing };
      }
    }
    return { key: parts.join('.') || '(config)', origin: 'config', value: undefined, missing: false };
  }
}

/**
 * Coerce a command-line string for `spec`: its JSON reading when that is an object or the schema
 * takes it (numbers, booleans, inline objects), else the string itself (paths, names); `null` unsets.
 * Anything else is left for the schema to reject with a message naming the key.
 */
export function coerceText(spec: OptionSpec, text: string): unknown {
  if (text === 'null') return null;
  let json: unknown;
  try {
    json = JSON.parse(text) as unknown;
  } catch {
    return text;
  }
  if (typeof json === 'object' && json !== null) return json; // inline objects are never file names
  if (spec.schema.safeParse(json).success || !spec.schema.safeParse(text).success) return json;
  return text;
}

/** "origin: key", or just the origin when it is `--set key`, which already names the key. */
export function keyAt(origin: string, key: string): string {
  return origin === `--set ${key}` ? origin : `${origin}: ${key}`;
}

/** Parse `key=value` of --set; the key must be in the table. */
export function parseSetArgument(values: OptionValues, argument: string): { key: string; value: unknown } {
  const at = argument.indexOf('=');
  if (at <= 0) throw new UserError(`--set ${argument}: expected key=value, e.g. --set optimizer.lr=3e-4`);
  const key = argument.slice(0, at).trim();
  const text = argument.slice(at + 1);
  let spec: OptionSpec;
  try {
    spec = values.spec(key);
  } catch {
    throw new UserError(`--set ${argument}: unknown config key "${key}"; known keys: ${values.keys().join(', ')}`);
  }
  return { key, value: coerceText(spec, text) };
}

/** The long flag of a key (`--batch-size`), or the key itself when it has none. */
/** The long flag of a key ('--epochs'), if it has one. */
export function longFlag(spec: OptionSpec): string | undefined {
  return spec.flag?.split(' ')[0];
}

export function flagName(key: string, spec: OptionSpec): string {
  return longFlag(spec) ?? key;
}

/**
 * Command-line values by dotted key, merged as one new layer: strings are coerced as --set values
 * are, and each value's origin is its flag, so a bad one is reported as `--seed: seed: …`.
 */
export function applyFlags(values: OptionValues, flags: Readonly<Record<string, unknown>>): void {
  values.nextLayer();
  for (const [key, value] of Object.entries(flags)) {
    if (value === undefined) continue;
    const spec = values.spec(key);
    values.set(key, typeof value === 'string' ? coerceText(spec, value) : value, flagName(key, spec));
  }
}

/**
 * The issues a user can act on. A union (a preset name or an inline object, say) fails as one
 * "Invalid input" for the whole value; when the value's type picks one alternative (only one branch
 * fails below its top level), that branch's own issues say what is wrong and where, with full paths.
 */
export function actionableIssues(issues: readonly z.core.$ZodIssue[]): z.core.$ZodIssue[] {
  return issues.flatMap((issue) => {
    if (issue.code !== 'invalid_union' || issue.errors.length === 0) return [issue];
    const wrongType = (branch: readonly z.core.$ZodIssue[]) => branch.some((inner) => inner.path.length === 0 && inner.code === 'invalid_type');
    const fitting = issue.errors.filter((branch) => !wrongType(branch));
    if (fitting.length !== 1) return [issue];
    return actionableIssues(fitting[0]!.map((inner) => ({ ...inner, path: [...issue.path, ...inner.path] }) as z.core.$ZodIssue));
  });
}

/** A bad value as a user would spot it: short values as JSON; an object or a long list by its shape, not its whole text. */
export function describeValue(value: unknown): string {
  // JSON has no Infinity or NaN: JSON.stringify writes them as null, which is not what was given (1e309).
  if (typeof value === 'number' && !Number.isFinite(value)) return String(value);
  const json = JSON.stringify(value);
  if (json === undefined) return String(value);
  if (json.length <= 60 || typeof value !== 'object' || value === null) return json.length <= 200 ? json : `${json.slice(0, 197)}...`;
  if (Array.isArray(value)) return `a list of ${value.length} items`;
  return `an object with keys ${Object.keys(value).join(', ')}`;
}

function describeIssue(issue: z.core.$ZodIssue, values: OptionValues): string {
  if (issue.code === 'unrecognized_keys') {
    const where = values.originOf(issue.path);
    return issue.keys.map((key) => `${where.origin}: unknown key "${[...issue.path.map(String), key].join('.')}"`).join('; ');
  }
  const { key, origin, value, missing } = values.originOf(issue.path);
  if (missing && values.spec(key).present) return `${origin}: missing required key "${key}" (${values.spec(key).help})`;
  const got = value === undefined ? '' : ` (got ${describeValue(value)})`;
  return `${keyAt(origin, key)}: ${issue.message}${got}`;
}

/** Validate the merged values against the table's schema; errors name each bad key and its origin. */
export function validateValues<T>(values: OptionValues, schema: z.ZodType<T>): T {
  const parsed = schema.safeParse(values.nested());
  if (!parsed.success) throw new UserError(`invalid config: ${actionableIssues(parsed.error.issues).map((issue) => describeIssue(issue, values)).join('; ')}`);
  return parsed.data;
}

/** A one-line type description for the docs, read from the schema (enums list their values). */
export function typeText(schema: z.ZodType): string {
  const json = z.toJSONSchema(schema, { unrepresentable: 'any' }) as Record<string, unknown>;
  return describeJsonType(json);
}

function describeJsonType(json: Record<string, unknown>): string {
  if (Array.isArray(json.enum)) return json.enum.map((v) => JSON.stringify(v)).join(' | ');
  if ('const' in json) return JSON.stringify(json.const);
  const alternatives = (json.anyOf ?? json.oneOf) as Record<string, unknown>[] | undefined;
  if (alternatives) return alternatives.map(describeJsonType).join(' | ');
  const type = json.type as string | undefined;
  if (type === 'array' && typeof json.items === 'object' && json.items !== null) {
    const items = json.items as Record<string, unknown>;
    return items.type === 'object' ? 'array of objects' : `array of ${describeJsonType(items)}`;
  }
  if (type === 'integer' || type === 'number') {
    const bounds: string[] = [];
    if (typeof json.minimum === 'number') bounds.push(`≥ ${json.minimum}`);
    if (typeof json.exclusiveMinimum === 'number') bounds.push(`> ${json.exclusiveMinimum}`);
    if (typeof json.maximum === 'number' && json.maximum < Number.MAX_SAFE_INTEGER) bounds.push(`≤ ${json.maximum}`);
    if (typeof json.exclusiveMaximum === 'number') bounds.push(`< ${json.exclusiveMaximum}`);
    return `${type === 'integer' ? 'integer' : 'number'}${bounds.length ? ` ${bounds.join(', ')}` : ''}`;
  }
  return type ?? 'value';
}

/** Every key for the docs: a list's element keys follow it as `key[].item`. */
function documentedEntries(table: OptionTable): [string, OptionSpec][] {
  return optionEntries(table).flatMap(([key, spec]): [string, OptionSpec][] => [
    [key, spec],
    ...Object.entries(spec.items ?? {}).map(([item, itemSpec]): [string, OptionSpec] => [`${key}[].${item}`, itemSpec]),
  ]);
}

function defaultText(spec: OptionSpec): string | undefined {
  if (spec.hasDefault) return JSON.stringify(spec.default);
  return spec.present ? 'required' : undefined;
}

/** A Markdown table of every key: the reference docs of a config kind. */
export function optionsMarkdown(table: OptionTable): string {
  const rows = documentedEntries(table).map(([key, spec]) => {
    const flag = spec.flag ? `\`${longFlag(spec)}\`` : '';
    const text = defaultText(spec);
    const def = spec.hasDefault ? `\`${text}\`` : (text ?? '—');
    return `| \`${key}\` | ${flag} | ${typeText(spec.schema).replaceAll('|', '\\|')} | ${def} | ${spec.help.replaceAll('|', '\\|')} |`;
  });
  return ['| key | flag | type | default | meaning |', '|---|---|---|---|---|', ...rows].join('\n');
}

/** The same reference as plain text, one key per line (for --help). */
export function optionsText(table: OptionTable): string {
  const entries = documentedEntries(table);
  const width = Math.max(...entries.map(([key]) => key.length));
  return entries
    .map(([key, spec]) => {
      const text = defaultText(spec);
      const def = text === undefined ? '' : spec.hasDefault ? ` = ${text}` : ` (${text})`;
      return `  ${key.padEnd(width)}  ${typeText(spec.schema)}${def}\n  ${' '.repeat(width)}  ${spec.help}`;
    })
    .join('\n');
}
