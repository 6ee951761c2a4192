/**
 * The evaluation report's operating-point section: its Markdown, its PNG charts (each binary view's
 * ROC and precision-recall curves and its decision curve, every model on one chart) and its JSON,
 * the `operatingPoints` key of evaluation.json (schema in docs/evaluation.md).
 */
import { printable } from '../util/index.js';
import { lineChartPng, type Series } from './plot.js';
import type { FittedOperatingPoints, IntervalValue, ScreeningTargets, ViewEvaluation } from './screening.js';

export interface ModelOperatingPoints {
  name: string;
  kind: 'model' | 'ensemble';
  /** Where the thresholds come from, in words: a run's calibration.json, or the val split eval fitted them on. */
  thresholdsFrom: string;
  fitted: FittedOperatingPoints;
  /** Scored on the evaluated split. */
  views: ViewEvaluation[];
}

/**
 * How the ensemble's score is made from its members, for `osteo predict --operating-point` with this
 * report: the weights, each member's temperature (null: uncalibrated) and weights' SHA-256, and the
 * ensemble's own temperature over the vote (null: none).
 */
export interface EnsembleScoreSource {
  weights: number[];
  temperature: number | null;
  members: { name: string; run: string; checkpoint: string; weightsSha256: string; temperature: number | null }[];
}

export interface OperatingPointsSection {
  targets: ScreeningTargets;
  /** The prevalence PPV and NPV are also given at; null when none was asked for. */
  prevalence: number | null;
  /** The score the thresholds apply to. */
  calibrated: boolean;
  /** The thresholds were chosen on the evaluated split itself (`--split val`): the rates are optimistic. */
  fittedOnEvaluatedSplit: boolean;
  models: ModelOperatingPoints[];
  ensemble?: EnsembleScoreSource;
}

const fixed = (v: number | null, digits = 3) => (v === null ? '—' : v.toFixed(digits));
const withInterval = (v: IntervalValue) => (v.value === null ? '—' : `${fixed(v.value)} (${fixed(v.lower)}–${fixed(v.upper)})`);

/** The Markdown section: per view, each model's AUC and each operating point's rates. */
export function operatingPointsMarkdown(section: OperatingPointsSection | undefined, split: string, resamples: number): string[] {
  if (section === undefined || section.models.length === 0) return [];
  const prevalence = section.prevalence;
  const lines = [
    '## Screening operating points',
    '',
    `Thresholds chosen on the val split (target sensitivity ${section.targets.sensitivity}, target specificity ${section.targets.specificity}, Youden's J) on the ${section.calibrated ? 'calibrated ' : ''}score of each view ` +
      `(the summed probability of its positive classes; positive when ≥ the threshold), scored on the ${split} split. Intervals: 95% percentile bootstrap over duplicate groups, ${resamples} resamples.`,
    '',
  ];
  if (section.fittedOnEvaluatedSplit) lines.push('**The thresholds were chosen on the evaluated split: these rates are optimistic.**', '');
  const views = section.models[0]!.views;
  for (const [j, view] of views.entries()) {
    lines.push(`### ${printable(view.name)} (${view.positives} positive, ${view.negatives} negative)`, '');
    const extra = prevalence === null ? [] : [`PPV at ${prevalence}`, `NPV at ${prevalence}`];
    lines.push(
      `| model | AUC (95% CI) | AP | point | threshold | val sens / spec | sensitivity | specificity | PPV | NPV |${extra.map((e) => ` ${e} |`).join('')}`,
      `|---|---|---|---|---|---|---|---|---|---|${extra.map(() => '---|').join('')}`,
    );
    for (const m of section.models) {
      const v = m.views[j]!;
      const fitted = m.fitted.views[j]!.points;
      v.points.forEach((p, q) => {
        const lead = q === 0 ? `${printable(m.name)} | ${withInterval(v.auc)} | ${fixed(v.pr.averagePrecision)}` : ' | | ';
        const atVal = `${fixed(fitted[q]!.fitted.sensitivity)} / ${fixed(fitted[q]!.fitted.specificity)}`;
        const at = p.atPrevalence === undefined ? [] : [withInterval(p.atPrevalence.ppv), withInterval(p.atPrevalence.npv)];
        lines.push(`| ${lead} | ${p.name} | ${p.threshold.toFixed(4)} | ${atVal} | ${[p.sensitivity, p.specificity, p.ppv, p.npv].map(withInterval).join(' | ')} |${at.map((c) => ` ${c} |`).join('')}`);
      });
    }
    lines.push('');
  }
  lines.push(
    'Thresholds: at a target sensitivity, the highest threshold whose val sensitivity is at least the target; at a target specificity, the lowest whose val specificity is at least the target; ' +
      "Youden's J, the threshold of the largest sensitivity + specificity − 1 on val (the highest among ties). AP: average precision. " +
      (prevalence === null ? '' : `PPV and NPV at prevalence ${prevalence}: Bayes' rule from the sensitivity and specificity. `) +
      'Decision curves: net benefit TP/n − FP/n · pt/(1 − pt) against the threshold probability pt, with treat-all and treat-none.',
    '',
  );
  const from = section.models.map((m) => `${printable(m.name)}: ${printable(m.thresholdsFrom)}`).join('; ');
  lines.push(`Thresholds from — ${from}.`, '');
  return lines;
}

/** Each view's ROC, precision-recall and decision-curve charts, every model on one chart. */
export function operatingPointsPlots(section: OperatingPointsSection | undefined, split: string): { file: string; png: () => Promise<Buffer> }[] {
  if (section === undefined || section.models.length === 0) return [];
  const plots: { file: string; png: () => Promise<Buffer> }[] = [];
  section.models[0]!.views.forEach((view, j) => {
    // View keys are camelCase words: lowercased they are file-name safe.
    const key = view.view.toLowerCase();
    const each = (series: (m: ModelOperatingPoints, v: ViewEvaluation) => Series) => section.models.map((m) => series(m, m.views[j]!));
    plots.push({
      file: `roc_view_${key}.png`,
      png: () =>
        lineChartPng({
          title: `${view.name} — ROC, ${split}`,
          xLabel: 'false positive rate (1 − specificity)',
          yLabel: 'sensitivity',
          xRange: [0, 1],
          yRange: [0, 1],
          diagonal: true,
          legend: 'bottom-right',
          series: each((m, v) => ({ name: `${m.name} (AUC ${fixed(v.auc.value)})`, x: v.roc.fpr, y: v.roc.tpr })),
        }),
    });
    plots.push({
      file: `pr_view_${key}.png`,
      png: () =>
        lineChartPng({
          title: `${view.name} — precision-recall, ${split}`,
          xLabel: 'recall (sensitivity)',
          yLabel: 'precision (PPV)',
          xRange: [0, 1],
          yRange: [0, 1],
          legend: 'bottom-right',
          series: each((m, v) => ({ name: `${m.name} (AP ${fixed(v.pr.averagePrecision)})`, x: v.pr.recall, y: v.pr.precision })),
        }),
    });
    plots.push({ file: `decision_curve_${key}.png`, png: () => decisionCurvePng(`${view.name} — decision curve, ${split}`, section.models.map((m) => ({ name: m.name, view: m.views[j]! }))) });
  });
  return plots;
}

/**
 * Net benefit against threshold probability, each model with treat-all and treat-none. The y axis
 * runs from −0.05 to a little above the prevalence (treat-all's value at pt = 0, the most any
 * strategy can gain); treat-all falls far below 0 at high pt, so its line stops at the axis.
 */
async function decisionCurvePng(title: string, models: { name: string; view: ViewEvaluation }[]): Promise<Buffer> {
  const first = models[0]!.view.decisionCurve;
  const prevalence = models[0]!.view.positives / Math.max(1, models[0]!.view.positives + models[0]!.view.negatives);
  const top = Math.max(0.05, prevalence * 1.1, ...models.flatMap((m) => m.view.decisionCurve.netBenefit));
  const bottom = -0.05;
  const clip = (values: number[]) => values.map((v) => (v < bottom ? Number.NaN : v));
  return lineChartPng({
    title,
    xLabel: 'threshold probability',
    yLabel: 'net benefit',
    xRange: [0, 1],
    yRange: [bottom, top],
    legend: 'top-right',
    series: [
      ...models.map((m) => ({ name: m.name, x: m.view.decisionCurve.thresholds, y: clip(m.view.decisionCurve.netBenefit) })),
      { name: 'treat all', x: first.thresholds, y: clip(first.treatAll) },
      { name: 'treat none', x: first.thresholds, y: first.treatNone },
    ],
  });
}

/** The section as evaluation.json's `operatingPoints` (docs/evaluation.md gives the schema). */
export function operatingPointsJson(section: OperatingPointsSection): unknown {
  return {
    version: 1,
    targets: section.targets,
    prevalence: section.prevalence,
    calibrated: section.calibrated,
    fittedOnEvaluatedSplit: section.fittedOnEvaluatedSplit,
    rule: 'positive when the view score (summed probability of its positive classes) is >= the threshold',
    models: section.models.map((m) => ({
      name: m.name,
      kind: m.kind,
      thresholdsFrom: m.thresholdsFrom,
      views: m.views.map((v, j) => ({ ...v, positiveClasses: m.fitted.views[j]!.positiveClasses, points: v.points.map((p, q) => ({ ...p, val: m.fitted.views[j]!.points[q]!.fitted })) })),
    })),
    ...(section.ensemble === undefined ? {} : { ensemble: section.ensemble }),
  };
}
