import { test } from 'uvu';
import * as assert from 'uvu/assert';
import sharp from 'sharp';
import { confusionMatrixPng, lineChartPng, lineChartSvg, niceTicks, reliabilityDiagramPng } from '../../src/report/index.js';
import { UserError } from '../../src/util/index.js';

async function pixels(png: Buffer) {
  const { data, info } = await sharp(png).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  const at = (x: number, y: number) => {
    const i = (y * info.width + x) * 3;
    return [data[i]!, data[i + 1]!, data[i + 2]!] as const;
  };
  return { data, info, at };
}

const near = (rgb: readonly number[], target: readonly number[], tol = 40) => rgb.every((v, i) => Math.abs(v - target[i]!) <= tol);

test('niceTicks covers the range with round steps', () => {
  assert.equal(niceTicks(0, 1, 5), [0, 0.2, 0.4, 0.6, 0.8, 1]);
  assert.equal(niceTicks(0.13, 0.87, 5), [0, 0.2, 0.4, 0.6, 0.8, 1]);
  assert.equal(niceTicks(1, 25, 6), [0, 5, 10, 15, 20, 25]);
  const flat = niceTicks(3, 3);
  assert.ok(flat[0]! < 3 && flat[flat.length - 1]! > 3, 'a flat series still gets a span');
});

test('lineChartPng draws the series where its values are', async () => {
  // Default frame: plot area x ∈ [72, 620], y ∈ [44, 364] for 640×420; y = 0.5 on a [0,1] axis is row 204.
  const png = await lineChartPng({
    title: 'loss & <accuracy>',
    xLabel: 'epoch',
    yLabel: 'value',
    yRange: [0, 1],
    series: [
      { name: 'flat', x: [0, 10], y: [0.5, 0.5] },
      { name: 'low', x: [0, 10], y: [0.1, 0.1] },
    ],
  });
  assert.equal([...png.subarray(1, 4)].map((c) => String.fromCharCode(c)).join(''), 'PNG');
  const { info, at } = await pixels(png);
  assert.is(info.width, 640);
  assert.is(info.height, 420);
  const blue = [0x1f, 0x77, 0xb4];
  const orange = [0xff, 0x7f, 0x0e];
  const column = (x: number, y0: number, y1: number, color: number[]) => {
    for (let y = y0; y <= y1; y++) if (near(at(x, y), color)) return true;
    return false;
  };
  assert.ok(column(200, 201, 207, blue), 'the first series crosses x=200 at y=0.5');
  assert.ok(column(200, 332, 338, orange), 'the second series crosses x=200 at y=0.1');
  assert.not.ok(column(200, 100, 180, blue), 'nothing blue far above the line');
});

test('non-finite points break the line; mismatched or empty series are errors', () => {
  const svg = lineChartSvg({ title: 't', xLabel: 'x', yLabel: 'y', series: [{ name: 'val', x: [1, 2, 3, 4], y: [0.2, 0.3, NaN, 0.5] }] });
  const path = /<path d="([^"]+)"/.exec(svg)![1]!;
  assert.is((path.match(/M/g) ?? []).length, 2);
  assert.not.match(svg, /NaN/);
  assert.throws(() => lineChartSvg({ title: 't', xLabel: 'x', yLabel: 'y', series: [] }), (e: unknown) => e instanceof UserError);
  assert.throws(
    () => lineChartSvg({ title: 't', xLabel: 'x', yLabel: 'y', series: [{ name: 's', x: [1], y: [1, 2] }] }),
    (e: unknown) => e instanceof UserError,
  );
});

test('confusion heat map: the diagonal of a good classifier is darker than the off-diagonal', async () => {
  const png = await confusionMatrixPng({
    title: 'test',
    classNames: ['Normal', 'Osteopenia', 'Osteoporosis'],
    confusion: [
      [9, 1, 0],
      [2, 7, 1],
      [0, 0, 10],
    ],
  });
  const { info, at } = await pixels(png);
  // Frame: cells span x ∈ [120, 500], y ∈ [50, 410] for 520×480; sample each cell near its corner (no text there).
  const cell = (r: number, c: number) => at(Math.round(120 + (c * 380) / 3 + 6), Math.round(50 + (r * 360) / 3 + 6));
  assert.is(info.width, 520);
  const brightness = (rgb: readonly number[]) => rgb[0]! + rgb[1]! + rgb[2]!;
  assert.ok(brightness(cell(2, 2)) < brightness(cell(0, 0)), '100% darker than 90%');
  assert.ok(brightness(cell(0, 0)) < brightness(cell(1, 0)), '90% darker than 20%');
  assert.ok(brightness(cell(2, 0)) > 760, 'an empty cell is white');
});

test('reliability diagram renders', async () => {
  const png = await reliabilityDiagramPng({
    title: 'calibration',
    models: [{ name: 'm', ece: 0.05, bins: [{ lower: 0.6, upper: 0.7, count: 3, meanConfidence: 0.65, accuracy: 0.6 }] }],
  });
  const { info } = await pixels(png);
  assert.is(info.width, 640);
});

test.run();
