/**
 * Subgroup metrics from a metadata table (eval's `--metadata`): for each attribute (site, device,
 * sex, age in bands, laterality), every model's metrics with their bootstrap intervals on each
 * subgroup's images. A subgroup under the minimum size is reported as too small, never as a number.
 */
import { printable } from '../util/index.js';
import { summarizeSubset, type ScoredModel } from './external.js';
import { modelSummaryJson, resultsTable, type EvaluationReport, type ModelSummary, type ReportSection } from './results.js';
import type { RandomSource } from './stats.js';

export const subgroupAttributes = ['site', 'device', 'sex', 'age', 'laterality'] as const;
export type SubgroupAttribute = (typeof subgroupAttributes)[number];

/** An image's recorded attributes (absent: not recorded); age in years. */
export type ImageAttributes = Partial<Record<Exclude<SubgroupAttribute, 'age'>, string>> & { age?: number };

/**
 * The band of an age for ascending edges [e1, …, en]: `<e1`, `e1–e2` (e1 ≤ age < e2), …, `≥en`.
 * Edges are whole or fractional years; a band's name shows them as given.
 */
export function ageBand(age: number, edges: readonly number[]): string {
  if (edges.length === 0) return 'all ages';
  if (age < edges[0]!) return `<${edges[0]}`;
  for (let i = 1; i < edges.length; i++) if (age < edges[i]!) return `${edges[i - 1]}–${edges[i]}`;
  return `≥${edges[edges.length - 1]}`;
}

/** Every band's name, youngest first. */
export function ageBandNames(edges: readonly number[]): string[] {
  if (edges.length === 0) return ['all ages'];
  return [`<${edges[0]}`, ...edges.slice(1).map((edge, i) => `${edges[i]}–${edge}`), `≥${edges[edges.length - 1]}`];
}

export interface Subgroup {
  value: string;
  images: number;
  /** Fewer images than the minimum: no numbers. */
  tooSmall: boolean;
  models: ModelSummary[];
}

export interface AttributeSubgroups {
  attribute: SubgroupAttribute;
  groups: Subgroup[];
  /** Evaluated images with a metadata row but no value for this attribute. */
  notRecorded: number;
}

export interface SubgroupResults {
  metadataFile: string;
  minSize: number;
  ageBands: number[];
  attributes: AttributeSubgroups[];
  /** Metadata paths that are not among the evaluated images (another split's, a typo, a file not there). */
  unknownPaths: string[];
  /** Evaluated images without a metadata row. */
  unmatchedImages: string[];
}

/**
 * The subgroups of the evaluated `images` by each attribute present in `metadata` (keyed by path), in
 * value order (age: band order), with each model's summary where the subgroup has `minSize` images.
 */
export function subgroupResults(input: {
  metadataFile: string;
  metadata: ReadonlyMap<string, ImageAttributes>;
  /** The attributes the table has a column for. */
  attributes: readonly SubgroupAttribute[];
  images: readonly { path: string; label: number }[];
  models: readonly ScoredModel[];
  classNames: readonly string[];
  minSize: number;
  ageBands: readonly number[];
  rng: () => RandomSource;
  resamples: number;
}): SubgroupResults {
  const evaluated = new Set(input.images.map((image) => image.path));
  const labels = input.images.map((image) => image.label);
  const valueOf = (attribute: SubgroupAttribute, attributes: ImageAttributes | undefined): string | undefined => {
    if (attributes === undefined) return undefined;
    if (attribute === 'age') return attributes.age === undefined ? undefined : ageBand(attributes.age, input.ageBands);
    const value = attributes[attribute];
    return value === undefined || value === '' ? undefined : value;
  };
  const attributes = input.attributes.map((attribute): AttributeSubgroups => {
    const members = new Map<string, number[]>();
    let notRecorded = 0;
    input.images.forEach((image, i) => {
      const row = input.metadata.get(image.path);
      const value = valueOf(attribute, row);
      if (value === undefined) {
        if (row !== undefined) notRecorded++;
        return;
      }
      members.set(value, [...(members.get(value) ?? []), i]);
    });
    const order = attribute === 'age' ? ageBandNames(input.ageBands) : [...members.keys()].sort();
    const groups = order
      .filter((value) => members.has(value))
      .map((value) => {
        const indices = members.get(value)!;
        const tooSmall = indices.length < input.minSize;
        return { value, images: indices.length, tooSmall, models: tooSmall ? [] : summarizeSubset(input.models, labels, indices, { classNames: input.classNames, rng: input.rng, resamples: input.resamples }) };
      });
    return { attribute, groups, notRecorded };
  });
  return {
    metadataFile: input.metadataFile,
    minSize: input.minSize,
    ageBands: [...input.ageBands],
    attributes,
    unknownPaths: [...input.metadata.keys()].filter((path) => !evaluated.has(path)).sort(),
    unmatchedImages: input.images.map((image) => image.path).filter((path) => !input.metadata.has(path)),
  };
}

/** The subgroups' section of results.md, `--json` and evaluation.json (`subgroups`). */
export function subgroupsSection(report: EvaluationReport, results: SubgroupResults): ReportSection {
  const json = {
    metadataFile: results.metadataFile,
    minSize: results.minSize,
    ageBands: results.ageBands,
    attributes: results.attributes.map((a) => ({
      attribute: a.attribute,
      notRecorded: a.notRecorded,
      groups: a.groups.map((g) => ({ value: g.value, images: g.images, tooSmall: g.tooSmall, models: g.models.map((m) => modelSummaryJson(m, report.classNames)) })),
    })),
    unknownPaths: results.unknownPaths,
    unmatchedImages: results.unmatchedImages,
  };
  const lines = [
    '## Subgroups',
    '',
    `From \`${printable(results.metadataFile)}\`. Each subgroup's metrics score the classes present in it, with the same bootstrap as above; ` +
      `a subgroup of fewer than ${results.minSize} images is too small to report. Age bands: ${ageBandNames(results.ageBands).join(', ')} (years).`,
    '',
  ];
  for (const a of results.attributes) {
    lines.push(`### ${a.attribute}`, '');
    if (a.groups.length === 0) lines.push('No evaluated image has a value.', '');
    for (const g of a.groups) {
      if (g.tooSmall) lines.push(`**${a.attribute} = ${printable(g.value)}**: ${g.images} images — too small to report (minimum ${results.minSize}).`, '');
      else lines.push(`**${a.attribute} = ${printable(g.value)}** (${g.images} images)`, '', resultsTable({ ...report, models: g.models }), '');
    }
    if (a.notRecorded > 0) lines.push(`${a.notRecorded} evaluated images have no ${a.attribute} recorded.`, '');
  }
  const listed = (paths: readonly string[]) => paths.slice(0, 20).map((p) => `\`${printable(p)}\``).join(', ') + (paths.length > 20 ? `, … (${paths.length} in all; evaluation.json lists them)` : '');
  if (results.unknownPaths.length > 0) lines.push(`Metadata rows whose path is not an evaluated image (${results.unknownPaths.length}): ${listed(results.unknownPaths)}.`, '');
  if (results.unmatchedImages.length > 0) lines.push(`Evaluated images without a metadata row (${results.unmatchedImages.length}): ${listed(results.unmatchedImages)}.`, '');
  const printed = results.attributes.map((a) => {
    const reported = a.groups.filter((g) => !g.tooSmall).length;
    return `subgroups by ${a.attribute}: ${a.groups.length} (${reported} reported, ${a.groups.length - reported} too small)`;
  });
  if (results.unknownPaths.length + results.unmatchedImages.length > 0) printed.push(`metadata: ${results.unknownPaths.length} paths not evaluated, ${results.unmatchedImages.length} images without a row (listed in results.md)`);
  return { key: 'subgroups', markdown: lines, console: printed, json };
}
