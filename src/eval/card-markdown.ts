/**
 * model-card.md, rendered from model-card.json alone (card.ts builds it): every number here is a
 * number of the JSON, formatted — metrics to 3 decimals, Brier and NLL to 4, counts whole — so a
 * test can read each one back and find it in the report it came from.
 *
 * Names from outside (a run's folder) are printed with control characters escaped and `|` quoted, so
 * none can break a table or start a line of its own.
 */
import { printable } from '../util/index.js';
import { cardSections, type CardSection } from './card-checklist.js';
import type { CardData, CardModel, ModelCard } from './card.js';
import type { CardCalibrationStats, CardEvaluation, CardMetric, CardRate } from './card-evaluation.js';

/** A table cell from text of outside origin (a run's folder name): one line, no column break. */
const cell = (text: string) => printable(text).replaceAll('|', '\\|');
const fixed = (v: number | null, digits = 3) => (v === null || !Number.isFinite(v) ? '—' : v.toFixed(digits));
const sum = (values: readonly number[]) => values.reduce((a, b) => a + b, 0);

/** A metric to 3 decimals with its interval; a whole number without one (a class's support) as it is. */
export function metricCell(metric: CardMetric): string {
  if (metric.interval === null) return metric.value !== null && Number.isInteger(metric.value) ? String(metric.value) : fixed(metric.value);
  return `${fixed(metric.value)} (${fixed(metric.interval[0])}–${fixed(metric.interval[1])})`;
}

function table(header: string[], rows: string[][]): string[] {
  return [`| ${header.join(' | ')} |`, `|${header.map(() => '---').join('|')}|`, ...rows.map((row) => `| ${row.join(' | ')} |`)];
}

function initialWeights(m: CardModel): string {
  const w = m.initialWeights;
  if (w.tag !== null) return `${w.tag} (${w.source}, SHA-256 \`${w.sha256Prefix}…\`, ${w.licence})`;
  return w.file === null ? 'none (random initialisation)' : `${cell(w.file)} (not a known tag)`;
}

function calibrationText(m: CardModel): string {
  if (m.calibration === null) return 'not calibrated';
  if (!m.calibration.applied) return `not applied (fitted on other weights, \`${m.calibration.weightsSha256.slice(0, 12)}…\`)`;
  return `T = ${m.calibration.temperature.toFixed(3)} (fitted on ${m.calibration.fittedOn.images} val images)`;
}

function modelsSection(card: ModelCard): string[] {
  const rows = card.models.map((m) => [
    cell(m.name),
    `${m.model}, torchvision's layers (${m.parameters.toLocaleString('en-US')} parameters at 3 classes), ${m.numClasses} outputs`,
    `${m.preprocessing.steps}`,
    initialWeights(m),
    `${m.weights.checkpoint}: \`${m.weights.sha256}\``,
    calibrationText(m),
  ]);
  const lines = table(['model', 'architecture', 'input', 'initial weights', 'trained weights (SHA-256)', 'calibration'], rows);
  lines.push('');
  for (const m of card.models) {
    const chosen = m.selection === null ? 'its checkpoint records no epoch or selection metric' : `epoch ${m.selection.epoch} (step ${m.selection.step}), chosen on ${m.selection.metric} = ${m.selection.value.toFixed(4)}`;
    lines.push(`- ${cell(m.name)}: run \`${cell(m.run)}\`, weights \`${cell(m.weights.file)}\`, ${chosen}.`);
  }
  return lines;
}

function flowRows(data: CardData): string[] {
  const flow = data.flow!;
  const row = (name: string, values: readonly number[]) => [name, ...values.map(String), String(sum(values))];
  return [
    ...table(['images', ...flow.classes, 'total'], [
      row('files found', flow.found),
      row('unreadable', flow.unreadable),
      row('readable (before de-duplication)', flow.readable),
      row('redundant identical copies', flow.duplicates),
      row('label conflicts left out', flow.conflicts),
      row('enter the split (after de-duplication)', flow.used),
      row('train', flow.split.train),
      row('val', flow.split.val),
      row('test', flow.split.test),
    ]),
    '',
    `Duplicate groups: ${flow.duplicateGroups} of identical decoded pixels, ${flow.nearDuplicateGroups} holding near duplicates (kept in one split), ${flow.conflictGroups} with conflicting labels. ` +
      `Test images with an identical copy in the training split: ${flow.leakedTestImages}.`,
  ];
}

function dataSection(card: ModelCard): string[] {
  const lines: string[] = [];
  for (const data of card.data) {
    lines.push(`### \`${cell(data.folder)}\``, '', `Models trained on it: ${data.models.map(cell).join(', ')}.`, '');
    const manifest = data.manifestSha256 === null ? 'none' : `\`${data.manifestSha256}\``;
    const asTrained = data.trainedManifestSha256 === null ? ' (no split record: not checked against training)' : data.trainedManifestSha256 === data.manifestSha256 ? ' (as trained)' : ` (trained with \`${data.trainedManifestSha256}\`)`;
    lines.push(`- splits.csv SHA-256: ${manifest}${asTrained}`);
    lines.push(`- index.csv SHA-256: ${data.index === null ? 'no index' : `\`${data.index.sha256}\` (in \`${cell(data.index.folder)}\`)`}`);
    lines.push(`- synthetic phantom: ${data.phantom ? 'yes' : 'no'}`, '');
    if (data.flow === null) lines.push(`No flow of images: the folder has no index.csv or splits.csv (\`osteo data index\`, \`osteo data split\`).`, '');
    else lines.push(...flowRows(data), '');
  }
  return lines;
}

function recipeSection(card: ModelCard): string[] {
  return card.models.flatMap((m) => [`**${cell(m.name)}**`, '', '```json', JSON.stringify(m.recipe, null, 2), '```', '']);
}

const pair = (b: CardCalibrationStats, a: CardCalibrationStats, pick: (s: CardCalibrationStats) => number, digits: number) => `${fixed(pick(b), digits)} → ${fixed(pick(a), digits)}`;

function evaluationLines(e: CardEvaluation): string[] {
  const first = e.models[0];
  const lines = [
    `### The ${e.split} split of \`${cell(e.data)}\``,
    '',
    `${e.images} images; report \`${cell(e.report)}\`; ${e.tta ? 'horizontal-flip TTA' : 'no TTA'}; intervals: 95% percentile bootstrap, ${e.bootstrap.resamples} resamples, seed ${e.bootstrap.seed}.`,
    '',
  ];
  if (e.copies !== null) {
    lines.push(
      `Copies of training images in this folder: ${e.copies.exact} identical and ${e.copies.near} near-identical of ${e.copies.images} images (fraction ${fixed(e.copies.copiedFraction, 3)}); ` +
        `${e.copies.withoutCopies} images have no copy. The metrics below count every image; the report also scores the images without copies.`,
      '',
    );
  }
  const members = e.models.filter((p) => p.kind === 'model');
  if (members.length > 1) {
    lines.push(`Ensemble: soft vote of the members' probabilities, weights (${e.ensembleWeights.mode}) ${members.map((p, i) => `${cell(p.name)} ${fixed(e.ensembleWeights.weights[i] ?? null, 3)}`).join(', ')}.`, '');
  }
  if (first !== undefined) {
    lines.push(...table(['model', ...first.overall.map((m) => (m.interval === null ? m.label : `${m.label} (95% CI)`))], e.models.map((p) => [cell(p.name), ...p.overall.map(metricCell)])), '');
    const labels = first.perClass[0]?.metrics.map((m) => m.label) ?? [];
    lines.push(...table(['model', 'class', ...labels], e.models.flatMap((p) => p.perClass.map((row) => [cell(p.name), row.class, ...row.metrics.map(metricCell)]))), '');
  }
  if (e.calibration === null) {
    lines.push('Uncalibrated probabilities: the report was made without a fresh temperature for every run (`osteo calibrate`).', '');
    return lines;
  }
  lines.push(
    'Calibration (temperature scaling), each cell uncalibrated → calibrated on these images; the tables above are of the calibrated probabilities. ' +
      'Temperature scaling leaves every predicted class unchanged, so accuracy, recall, F1, κ and the class error are the same before and after.',
    '',
    ...table(
      ['model', 'T', 'ECE', 'adaptive ECE', 'class-wise ECE', 'Brier', 'NLL'],
      e.calibration.models.map((m) => [cell(m.name), m.temperature.toFixed(3), pair(m.before, m.after, (s) => s.ece, 3), pair(m.before, m.after, (s) => s.adaptiveEce, 3), pair(m.before, m.after, (s) => s.meanClasswiseEce, 3), pair(m.before, m.after, (s) => s.brier, 4), pair(m.before, m.after, (s) => s.nll, 4)]),
    ),
    '',
  );
  if (e.calibration.fittedOnEvaluatedSplit) lines.push('**The temperatures were fitted on this split: the calibrated numbers are optimistic.**', '');
  return lines;
}

const rate = (r: CardRate | null) => (r === null || r.value === null ? '—' : r.lower === null || r.upper === null ? fixed(r.value) : `${fixed(r.value)} (${fixed(r.lower)}–${fixed(r.upper)})`);

function operatingPointLines(card: ModelCard): string[] {
  const found = card.evaluations.filter((e) => e.operatingPoints !== null);
  if (found.length === 0) return ['_Not evaluated: the evaluation report holds no operating points (a report made without a val split, or with one lacking a class, has none)._', ''];
  return found.flatMap((e) => {
    const op = e.operatingPoints!;
    return [
      `From \`${cell(e.report)}\` (the ${e.split} split of \`${cell(e.data)}\`): thresholds chosen on val (targets: sensitivity ${fixed(op.targets.sensitivity, 2)}, specificity ${fixed(op.targets.specificity, 2)}), ` +
        `on ${op.calibrated ? 'calibrated' : 'uncalibrated'} scores; an image is positive when its view's score is at least the threshold. Rates with 95% group-bootstrap intervals.`,
      '',
      ...table(
        ['model', 'view', 'point', 'threshold', 'sensitivity', 'specificity', 'PPV', 'NPV'],
        op.points.map((p) => [cell(p.model), cell(p.view), cell(p.point), fixed(p.threshold, 3), rate(p.sensitivity), rate(p.specificity), rate(p.ppv), rate(p.npv)]),
      ),
      '',
      ...(op.fittedOnEvaluatedSplit ? ['**The thresholds were chosen on the evaluated split: the rates are optimistic.**', ''] : []),
    ];
  });
}

function subgroupLines(card: ModelCard): string[] {
  const found = card.evaluations.filter((e) => e.subgroups !== null);
  if (found.length === 0) return ['_Not evaluated: the evaluation report holds no subgroup results (`osteo eval … --metadata CSV`)._', ''];
  return found.flatMap((e) => {
    const rows = e.subgroups!.flatMap((a) =>
      a.groups.flatMap((g) =>
        g.tooSmall || g.models.length === 0
          ? [[cell(a.attribute), cell(g.value), String(g.images), '—', 'too few images']]
          : g.models.map((m) => [cell(a.attribute), cell(g.value), String(g.images), cell(m.name), metricCell(m.overall.find((metric) => metric.key === 'accuracy') ?? m.overall[0]!)]),
      ),
    );
    const unrecorded = e.subgroups!.filter((a) => a.notRecorded > 0).map((a) => `${cell(a.attribute)}: ${a.notRecorded} images not recorded`);
    return [`From \`${cell(e.report)}\`:`, '', ...table(['attribute', 'group', 'images', 'model', 'accuracy (95% CI)'], rows), '', ...(unrecorded.length > 0 ? [`${unrecorded.join('; ')}.`, ''] : [])];
  });
}

function checklistSection(card: ModelCard): string[] {
  return card.checklists.flatMap((list) => {
    const covered = list.items.filter((item) => item.section !== null).length;
    return [
      `### ${list.name}`,
      '',
      `${list.reference}. This card answers ${covered} of its ${list.items.length} items; the others need a human.`,
      '',
      ...table(['item', 'topic', 'answered in'], list.items.map((item) => [item.id, item.title, item.section === null ? '**needs a human**' : cardSections[item.section as CardSection]])),
      '',
    ];
  });
}

export function renderModelCard(card: ModelCard): string {
  const internal = card.evaluations.filter((e) => e.role === 'internal');
  const external = card.evaluations.filter((e) => e.role === 'external');
  const lines = [
    `# ${cell(card.title)}`,
    '',
    `> **Research use only. Not a diagnostic device.** Every prediction must be reviewed by a clinician.`,
    '',
    `## ${cardSections.intendedUse}`,
    '',
    ...card.intendedUse.intended.map((line) => `- ${line}`),
    '',
    'Out of scope:',
    '',
    ...card.intendedUse.outOfScope.map((line) => `- ${line}`),
    '',
    `## ${cardSections.models}`,
    '',
    ...modelsSection(card),
    '',
    `## ${cardSections.data}`,
    '',
    ...dataSection(card),
    `## ${cardSections.recipe}`,
    '',
    ...recipeSection(card),
    `## ${cardSections.performance}`,
    '',
    ...(internal.length === 0 ? [`_${card.notEvaluated ?? 'Not evaluated.'}_`, ''] : internal.flatMap(evaluationLines)),
    `## ${cardSections.operatingPoints}`,
    '',
    ...operatingPointLines(card),
    `## ${cardSections.external}`,
    '',
    ...(external.length === 0 ? ['_Not evaluated: no report on data other than the training data was given (`osteo eval --run RUN… --data OTHER`, then `osteo card --eval REPORT`)._', ''] : external.flatMap(evaluationLines)),
    `## ${cardSections.subgroups}`,
    '',
    ...subgroupLines(card),
    `## ${cardSections.limitations}`,
    '',
    ...card.limitations.map((line) => `- ${cell(line)}`),
    '',
    '## Reporting checklists',
    '',
    ...checklistSection(card),
    '## To be completed by a human',
    '',
    ...card.human.map((line) => `- **[to be written]** ${line}`),
    '',
    '---',
    '',
    `Written by osteo ${card.osteoVersion} on ${card.createdAt} from model-card.json${card.export === null ? '' : `, with the ${card.export.format} export of this folder`}.`,
    '',
  ];
  return lines.join('\n');
}
