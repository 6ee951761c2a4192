/**
 * Charts as SVG, rendered to PNG by sharp (librsvg).
 *
 * Why no chart library: the maintained JavaScript ones (Chart.js, Vega, ECharts, Plotly) draw on a
 * browser canvas or DOM, and running them headless in Node needs node-canvas (native build) or jsdom
 * — a large dependency for four chart types. A line chart, a heat map and a bar chart are each a few
 * dozen SVG elements, and sharp, already a dependency for images, turns SVG into PNG with no browser.
 */
import sharp from 'sharp';
import { UserError } from '../util/index.js';

/** Tableau-10: distinct at a glance and readable for the common colour-vision deficiencies. */
export const seriesColors = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22', '#17becf'] as const;

export interface Series {
  name: string;
  x: number[];
  y: number[];
}

export interface LineChartOptions {
  title: string;
  xLabel: string;
  yLabel: string;
  series: Series[];
  /** Fixed axis ranges; by default each spans its data (padded to nice tick values). */
  xRange?: [number, number];
  yRange?: [number, number];
  /** Whole-number x ticks only (epochs): no 1.5 between epochs 1 and 2. */
  xIntegerTicks?: boolean;
  /** Draw the dashed y = x line (ROC curves, reliability diagrams). */
  diagonal?: boolean;
  /** Legend corner, chosen where the data is not: ROC curves leave the bottom right empty. */
  legend?: LegendCorner;
  width?: number;
  height?: number;
}

interface Frame {
  width: number;
  height: number;
  left: number;
  right: number;
  top: number;
  bottom: number;
}

function frame(width = 640, height = 420): Frame {
  return { width, height, left: 72, right: width - 20, top: 44, bottom: height - 56 };
}

export function escapeXml(text: string): string {
  return text.replace(/[&<>"']/g, (ch) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' })[ch]!);
}

/** Round tick values (1, 2, 5 × 10^k steps) covering [min, max]; with `integer`, steps of at least 1 (whole numbers only). */
export function niceTicks(min: number, max: number, target = 6, integer = false): number[] {
  if (!(max > min)) {
    const pad = integer ? 1 : min === 0 ? 1 : Math.abs(min) * 0.1;
    return niceTicks(min - pad, max + pad, target, integer);
  }
  const rough = (max - min) / target;
  const magnitude = 10 ** Math.floor(Math.log10(rough));
  const nice = [1, 2, 5, 10].map((m) => m * magnitude).find((s) => s >= rough) ?? 10 * magnitude;
  const step = integer ? Math.max(1, nice) : nice;
  const first = Math.floor(min / step + 1e-9) * step;
  const ticks: number[] = [];
  // Index-based so float accumulation cannot add or drop the last tick.
  for (let k = 0; ticks.length === 0 || ticks[ticks.length - 1]! < max - step * 1e-9; k++) {
    ticks.push(Number((first + k * step).toPrecision(12)));
  }
  return ticks;
}

function formatTick(value: number): string {
  if (value === 0) return '0';
  const abs = Math.abs(value);
  if (abs >= 1e5 || abs < 1e-3) return value.toExponential(1);
  return String(Number(value.toPrecision(6)));
}

function text(x: number, y: number, content: string, attributes = ''): string {
  return `<text x="${x.toFixed(1)}" y="${y.toFixed(1)}" ${attributes}>${escapeXml(content)}</text>`;
}

function svgDocument(f: Frame, body: string[]): string {
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${f.width}" height="${f.height}" viewBox="0 0 ${f.width} ${f.height}" font-family="DejaVu Sans, Arial, sans-serif">`,
    `<rect width="${f.width}" height="${f.height}" fill="#ffffff"/>`,
    ...body,
    '</svg>',
  ].join('\n');
}

interface Axes {
  toX(v: number): number;
  toY(v: number): number;
  elements: string[];
}

/** Grid, ticks, labels and title for a plot area mapping [x0,x1]×[y0,y1]. */
function axes(f: Frame, xTicks: number[], yTicks: number[], title: string, xLabel: string, yLabel: string): Axes {
  const [x0, x1] = [xTicks[0]!, xTicks[xTicks.length - 1]!];
  const [y0, y1] = [yTicks[0]!, yTicks[yTicks.length - 1]!];
  const toX = (v: number) => f.left + ((v - x0) / (x1 - x0)) * (f.right - f.left);
  const toY = (v: number) => f.bottom - ((v - y0) / (y1 - y0)) * (f.bottom - f.top);
  const elements: string[] = [];
  for (const t of xTicks) {
    const x = toX(t);
    elements.push(`<line x1="${x.toFixed(1)}" y1="${f.top}" x2="${x.toFixed(1)}" y2="${f.bottom}" stroke="#e6e6e6"/>`);
    elements.push(text(x, f.bottom + 18, formatTick(t), 'font-size="12" text-anchor="middle" fill="#333"'));
  }
  for (const t of yTicks) {
    const y = toY(t);
    elements.push(`<line x1="${f.left}" y1="${y.toFixed(1)}" x2="${f.right}" y2="${y.toFixed(1)}" stroke="#e6e6e6"/>`);
    elements.push(text(f.left - 8, y + 4, formatTick(t), 'font-size="12" text-anchor="end" fill="#333"'));
  }
  elements.push(`<rect x="${f.left}" y="${f.top}" width="${f.right - f.left}" height="${f.bottom - f.top}" fill="none" stroke="#444"/>`);
  elements.push(text(f.width / 2, 26, title, 'font-size="16" font-weight="bold" text-anchor="middle" fill="#111"'));
  elements.push(text((f.left + f.right) / 2, f.height - 14, xLabel, 'font-size="13" text-anchor="middle" fill="#111"'));
  const cy = (f.top + f.bottom) / 2;
  elements.push(text(18, cy, yLabel, `font-size="13" text-anchor="middle" fill="#111" transform="rotate(-90 18 ${cy.toFixed(1)})"`));
  return { toX, toY, elements };
}

export type LegendCorner = 'top-right' | 'bottom-right' | 'top-left';

function legend(f: Frame, entries: { name: string; color: string }[], corner: LegendCorner = 'top-right'): string[] {
  if (entries.length === 0) return [];
  const longest = Math.max(...entries.map((e) => e.name.length));
  const boxWidth = Math.min(f.right - f.left - 16, 34 + longest * 7.2);
  const boxHeight = entries.length * 18 + 8;
  const x = corner === 'top-left' ? f.left + 8 : f.right - boxWidth - 8;
  const y = corner === 'bottom-right' ? f.bottom - boxHeight - 8 : f.top + 8;
  const out = [`<rect x="${x.toFixed(1)}" y="${y}" width="${boxWidth.toFixed(1)}" height="${boxHeight}" fill="#ffffff" fill-opacity="0.85" stroke="#bbb"/>`];
  entries.forEach((entry, i) => {
    const rowY = y + 16 + i * 18;
    out.push(`<line x1="${x + 6}" y1="${rowY - 4}" x2="${x + 24}" y2="${rowY - 4}" stroke="${entry.color}" stroke-width="3"/>`);
    out.push(text(x + 30, rowY, entry.name, 'font-size="12" fill="#111"'));
  });
  return out;
}

function finiteRange(values: number[], fallback: [number, number]): [number, number] {
  let min = Infinity;
  let max = -Infinity;
  for (const v of values) {
    if (!Number.isFinite(v)) continue;
    min = Math.min(min, v);
    max = Math.max(max, v);
  }
  return min === Infinity ? fallback : [min, max];
}

/** An SVG line chart; non-finite points break the line (an epoch without validation, say). */
export function lineChartSvg(options: LineChartOptions): string {
  if (options.series.length === 0) throw new UserError(`chart '${options.title}' has no series`);
  for (const s of options.series) {
    if (s.x.length !== s.y.length) throw new UserError(`series '${s.name}' has ${s.x.length} x values and ${s.y.length} y values`);
  }
  const f = frame(options.width, options.height);
  const xTicks = niceTicks(...(options.xRange ?? finiteRange(options.series.flatMap((s) => s.x), [0, 1])), 6, options.xIntegerTicks);
  const yTicks = niceTicks(...(options.yRange ?? finiteRange(options.series.flatMap((s) => s.y), [0, 1])));
  const ax = axes(f, xTicks, yTicks, options.title, options.xLabel, options.yLabel);
  const body = [...ax.elements];
  if (options.diagonal) {
    const lo = Math.max(xTicks[0]!, yTicks[0]!);
    const hi = Math.min(xTicks[xTicks.length - 1]!, yTicks[yTicks.length - 1]!);
    body.push(
      `<line x1="${ax.toX(lo).toFixed(1)}" y1="${ax.toY(lo).toFixed(1)}" x2="${ax.toX(hi).toFixed(1)}" y2="${ax.toY(hi).toFixed(1)}" stroke="#888" stroke-dasharray="6 4"/>`,
    );
  }
  options.series.forEach((s, i) => {
    const color = seriesColors[i % seriesColors.length]!;
    let path = '';
    let penDown = false;
    for (let k = 0; k < s.x.length; k++) {
      const [x, y] = [s.x[k]!, s.y[k]!];
      if (!Number.isFinite(x) || !Number.isFinite(y)) {
        penDown = false;
        continue;
      }
      path += `${penDown ? 'L' : 'M'}${ax.toX(x).toFixed(2)},${ax.toY(y).toFixed(2)} `;
      penDown = true;
    }
    body.push(`<path d="${path.trim()}" fill="none" stroke="${color}" stroke-width="2.5" stroke-linejoin="round"/>`);
    // A single point (or a series of isolated points) has no line to show, so mark every point when short.
    if (s.x.length <= 30) {
      for (let k = 0; k < s.x.length; k++) {
        if (!Number.isFinite(s.x[k]!) || !Number.isFinite(s.y[k]!)) continue;
        body.push(`<circle cx="${ax.toX(s.x[k]!).toFixed(2)}" cy="${ax.toY(s.y[k]!).toFixed(2)}" r="3" fill="${color}"/>`);
      }
    }
  });
  body.push(...legend(f, options.series.map((s, i) => ({ name: s.name, color: seriesColors[i % seriesColors.length]! })), options.legend));
  return svgDocument(f, body);
}

export async function svgToPng(svg: string): Promise<Buffer> {
  return sharp(Buffer.from(svg)).png().toBuffer();
}

/** Line chart (training curves, ROC curves) as a PNG. */
export async function lineChartPng(options: LineChartOptions): Promise<Buffer> {
  return svgToPng(lineChartSvg(options));
}

export interface ConfusionChartOptions {
  title: string;
  classNames: readonly string[];
  confusion: number[][];
  width?: number;
  height?: number;
}

/** Confusion matrix heat map: cell shade = row-normalized rate (recall view), label = count and rate. */
export function confusionMatrixSvg(options: ConfusionChartOptions): string {
  const n = options.classNames.length;
  if (options.confusion.length !== n || options.confusion.some((row) => row.length !== n)) {
    throw new UserError(`confusion matrix is not ${n}×${n}`);
  }
  const width = options.width ?? 520;
  const height = options.height ?? 480;
  const f: Frame = { width, height, left: 120, right: width - 20, top: 50, bottom: height - 70 };
  const cellW = (f.right - f.left) / n;
  const cellH = (f.bottom - f.top) / n;
  const body: string[] = [text(width / 2, 28, options.title, 'font-size="16" font-weight="bold" text-anchor="middle" fill="#111"')];
  for (let r = 0; r < n; r++) {
    const rowTotal = options.confusion[r]!.reduce((a, b) => a + b, 0);
    for (let c = 0; c < n; c++) {
      const count = options.confusion[r]![c]!;
      const rate = rowTotal === 0 ? 0 : count / rowTotal;
      // White → deep blue, so a perfect classifier is a dark diagonal.
      const shade = (v: number) => Math.round(255 - rate * (255 - v));
      const fill = `rgb(${shade(8)},${shade(48)},${shade(107)})`;
      const x = f.left + c * cellW;
      const y = f.top + r * cellH;
      body.push(`<rect x="${x.toFixed(1)}" y="${y.toFixed(1)}" width="${cellW.toFixed(1)}" height="${cellH.toFixed(1)}" fill="${fill}" stroke="#ffffff"/>`);
      const ink = rate > 0.5 ? '#ffffff' : '#111111';
      body.push(text(x + cellW / 2, y + cellH / 2, String(count), `font-size="18" font-weight="bold" text-anchor="middle" fill="${ink}"`));
      body.push(text(x + cellW / 2, y + cellH / 2 + 18, `${(rate * 100).toFixed(1)}%`, `font-size="12" text-anchor="middle" fill="${ink}"`));
    }
    body.push(text(f.left - 8, f.top + (r + 0.5) * cellH + 4, options.classNames[r]!, 'font-size="12" text-anchor="end" fill="#111"'));
  }
  for (let c = 0; c < n; c++) {
    body.push(text(f.left + (c + 0.5) * cellW, f.bottom + 18, options.classNames[c]!, 'font-size="12" text-anchor="middle" fill="#111"'));
  }
  body.push(text((f.left + f.right) / 2, height - 18, 'predicted class', 'font-size="13" text-anchor="middle" fill="#111"'));
  const cy = (f.top + f.bottom) / 2;
  body.push(text(16, cy, 'true class', `font-size="13" text-anchor="middle" fill="#111" transform="rotate(-90 16 ${cy.toFixed(1)})"`));
  return svgDocument(f, body);
}

export async function confusionMatrixPng(options: ConfusionChartOptions): Promise<Buffer> {
  return svgToPng(confusionMatrixSvg(options));
}

export interface ReliabilityBin {
  /** Bin edges in confidence. */
  lower: number;
  upper: number;
  count: number;
  meanConfidence: number;
  accuracy: number;
}

export interface ReliabilityChartOptions {
  title: string;
  /** One entry per model: its bins (empty bins are skipped when drawn). */
  models: { name: string; bins: ReliabilityBin[]; ece: number }[];
  width?: number;
  height?: number;
}

/**
 * Reliability diagram: accuracy against confidence per bin, one line per model, with the perfectly
 * calibrated diagonal. Lines rather than bars so several models share one chart.
 */
export function reliabilityDiagramSvg(options: ReliabilityChartOptions): string {
  return lineChartSvg({
    title: options.title,
    xLabel: 'confidence (top-class probability)',
    yLabel: 'accuracy',
    xRange: [0, 1],
    yRange: [0, 1],
    diagonal: true,
    // Over-confident models sit below the diagonal (bottom right); the top left stays clear.
    legend: 'top-left',
    width: options.width,
    height: options.height,
    series: options.models.map((m) => {
      const used = m.bins.filter((b) => b.count > 0);
      return { name: `${m.name} (ECE ${m.ece.toFixed(3)})`, x: used.map((b) => b.meanConfidence), y: used.map((b) => b.accuracy) };
    }),
  });
}

export async function reliabilityDiagramPng(options: ReliabilityChartOptions): Promise<Buffer> {
  return svgToPng(reliabilityDiagramSvg(options));
}
