/**
 * `osteo data synth`: a deterministic phantom of the Kaggle knee dataset.
 *
 * Each image is an anteroposterior knee radiograph rendered from signed-distance shapes: femoral shaft
 * flaring into two condyles, a joint space, the tibial plateau with its spines, the fibula, soft tissue,
 * a patella shadow. Bone is drawn as a cortex (bright where the X-ray runs tangentially through the
 * shell) around cancellous bone whose trabecular network is ridged value noise.
 *
 * The classes differ as the disease does, through one latent bone-quality score per image whose class
 * means overlap (so the task is learnable but not trivially): as the score falls the cortex thins,
 * trabeculae get sparser and coarser, and bone attenuates less. Nuisances follow real films: pose
 * (rotation, scale, shift), framing (square and portrait crops), exposure (gain, gamma, heel-effect
 * gradient), quantum noise, a side marker, JPEG and PNG, grayscale and RGB files.
 *
 * Planted for the index to find, and listed in DEST/phantom.json: per class one image saved twice as
 * identical PNG files plus once as lossless WebP (same decoded pixels), one JPEG re-saved as PNG, one
 * downscaled lossy copy (a near duplicate), and ONE Osteopenia image also filed under Osteoporosis
 * (a label conflict). With `duplicateRate` R, Normal and Osteoporosis also get byte-identical copies
 * of randomly chosen images until about R of their files are such copies (the Kaggle set: about half),
 * so a random split without de-duplication tests on training images, as the published protocol did.
 *
 * `--force` replaces only what synth owns (the class folders, phantom.json, and the index, split and
 * cache derived from them) in a folder that phantom.json marks as a phantom; any other file stays, and
 * a folder that is not a phantom is refused.
 *
 * Image i of class c depends only on (seed, c, i): adding images never changes the existing ones.
 *
 * `format: 'dicom'` writes every image that no planted copy derives from as DICOM (dicom-write.ts), in
 * three variants by index: 8-bit MONOCHROME2 and 8-bit MONOCHROME1 (stored inverted) with a window
 * that maps them back onto the 8-bit film exactly, and a 12-bit MONOCHROME2 film (the 8-bit film × 16
 * plus sub-level detail, RescaleIntercept −1024) whose window keeps it deeper than 8 bits. The planted
 * copies and their originals stay PNG/JPEG/WebP, so the index finds the same groups either way.
 */
import { copyFile, mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import sharp from 'sharp';
import { UserError, mapLimit, createRng, deriveSeed, replaceEntries, uniform, type Rng } from '../util/index.js';
import { classNames } from './classes.js';
import { writeDicom } from './dicom-write.js';

export interface SynthOptions {
  dest: string;
  /** Distinct images per class (default 60). */
  perClass?: number;
  /** Width in pixels; portrait films are 1.25 × taller (default 256). */
  size?: number;
  seed?: number;
  /** Replace an existing phantom at `dest`. */
  force?: boolean;
  /** Fraction in [0, 0.9] of the Normal and Osteoporosis files that are byte-identical copies (default 0). */
  duplicateRate?: number;
  /** 'raster' (PNG/JPEG, the default) or 'dicom' (see the header). */
  format?: PhantomFormat;
}

export const phantomFormats = ['raster', 'dicom'] as const;
export type PhantomFormat = (typeof phantomFormats)[number];

/** The classes whose files the Kaggle set duplicates about half of. */
const duplicatedClasses = [0, 2];
/** What `osteo data synth` writes at the top of DEST, and what is derived from it there (index, split, cache). */
const ownedEntries = [...classNames, 'phantom.json', 'index.csv', 'splits.csv', '.cache'];

export interface PlantedDuplicate {
  kind: 'exact' | 'near' | 'conflict';
  /** Relative paths; the first is the original. */
  paths: string[];
}

export interface SynthResult {
  dest: string;
  /** Files written per class (distinct images + planted copies). */
  files: number[];
  distinctPerClass: number;
  planted: PlantedDuplicate[];
  /** Expected index findings: groups of identical decoded pixels, near-duplicate pairs, conflicts. */
  expected: { files: number; exactDuplicateGroups: number; nearDuplicateGroups: number; conflicts: number };
  seconds: number;
  /** true: DEST already held this very phantom (same settings), and nothing was written. */
  reused?: boolean;
}

interface PhantomDescription {
  seed: number;
  size: number;
  perClass: number;
  duplicateRate: number;
  format: PhantomFormat;
  files: number[];
  planted: PlantedDuplicate[];
  expected: SynthResult['expected'];
}

/** DEST/phantom.json as synth wrote it, or undefined when it cannot be read as one. */
async function readPhantomDescription(dest: string): Promise<PhantomDescription | undefined> {
  try {
    const json = JSON.parse(await readFile(join(dest, 'phantom.json'), 'utf8')) as Partial<PhantomDescription> & { generator?: string };
    if (json.generator !== 'osteo data synth' || !Array.isArray(json.files) || !Array.isArray(json.planted) || json.expected === undefined) return undefined;
    return { ...json, duplicateRate: json.duplicateRate ?? 0, format: json.format ?? 'raster' } as PhantomDescription;
  } catch {
    return undefined;
  }
}

/** The latent bone-quality score's mean per class; its spread (σ 0.1) makes neighbours overlap. */
const classDensityMean = [0.78, 0.5, 0.22];
const densitySpread = 0.1;

interface Anatomy {
  density: number;
  cortex: number; // shaft cortical thickness, anatomy units
  strutWidth: number; // fraction of the ridge profile drawn as bone: higher is denser
  frequency: number; // trabecular lattice frequency: higher is finer
  mineral: number; // overall attenuation of bone
  shaftHalfWidth: number;
  condyleRadius: number;
  gap: number;
  legHalfWidth: number;
  tissue: number;
  textureSeed: number;
}

interface Pose {
  angle: number;
  pixelsPerUnit: number;
  shiftU: number;
  shiftV: number;
}

interface Exposure {
  gain: number;
  gamma: number;
  offset: number;
  heel: number;
  noise: number;
  marker: number; // -1 none, else corner 0..3
}

function clamp01(x: number): number {
  return x < 0 ? 0 : x > 1 ? 1 : x;
}

function smoothstep(edge0: number, edge1: number, x: number): number {
  const t = clamp01((x - edge0) / (edge1 - edge0));
  return t * t * (3 - 2 * t);
}

/** Polynomial smooth minimum: unions that flare (shaft into condyles) instead of meeting at a crease. */
function smin(a: number, b: number, k: number): number {
  const h = clamp01(0.5 + (0.5 * (b - a)) / k);
  return b + (a - b) * h - k * h * (1 - h);
}

function boxSdf(u: number, v: number, cu: number, cv: number, hu: number, hv: number, r: number): number {
  const du = Math.abs(u - cu) - hu + r;
  const dv = Math.abs(v - cv) - hv + r;
  const ou = du > 0 ? du : 0;
  const ov = dv > 0 ? dv : 0;
  const outside = Math.sqrt(ou * ou + ov * ov); // not Math.hypot: it is several times slower in V8
  return outside + Math.min(Math.max(du, dv), 0) - r;
}

function circleSdf(u: number, v: number, cu: number, cv: number, r: number): number {
  const du = u - cu;
  const dv = v - cv;
  return Math.sqrt(du * du + dv * dv) - r;
}

function hash2(ix: number, iy: number, seed: number): number {
  let h = (Math.imul(ix, 0x27d4eb2d) ^ Math.imul(iy, 0x165667b1) ^ seed) >>> 0;
  h = Math.imul(h ^ (h >>> 15), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return ((h ^ (h >>> 16)) >>> 0) / 4294967296;
}

function valueNoise(x: number, y: number, seed: number): number {
  const ix = Math.floor(x);
  const iy = Math.floor(y);
  const fx = x - ix;
  const fy = y - iy;
  const sx = fx * fx * (3 - 2 * fx);
  const sy = fy * fy * (3 - 2 * fy);
  const a = hash2(ix, iy, seed);
  const b = hash2(ix + 1, iy, seed);
  const c = hash2(ix, iy + 1, seed);
  const d = hash2(ix + 1, iy + 1, seed);
  return a + (b - a) * sx + (c - a) * sy + (a - b - c + d) * sx * sy;
}

/** Trabecular network in [0, 1]: ridges of two octaves of value noise, stretched along the bone's axis. */
function trabecular(u: number, v: number, anatomy: Anatomy): number {
  const f = anatomy.frequency;
  const n1 = valueNoise(u * f, v * f * 0.55, anatomy.textureSeed);
  const n2 = valueNoise(u * f * 2.1 + 17.3, v * f * 1.3 + 5.1, anatomy.textureSeed ^ 0x5bd1e995);
  const ridge = 1 - Math.abs(2 * (0.7 * n1 + 0.3 * n2) - 1);
  return smoothstep(1 - anatomy.strutWidth, 1 - anatomy.strutWidth * 0.55, ridge);
}

function sampleAnatomy(rng: Rng, label: number): Anatomy {
  // Irwin–Hall(4) is close enough to a normal for a latent score and costs four uniforms.
  const z = (rng.next() + rng.next() + rng.next() + rng.next() - 2) * Math.sqrt(3);
  const density = clamp01(classDensityMean[label]! + densitySpread * z);
  return {
    density,
    cortex: 0.022 + 0.05 * density + uniform(rng, -0.006, 0.006),
    strutWidth: 0.16 + 0.3 * density + uniform(rng, -0.04, 0.04),
    frequency: 20 + 24 * density + uniform(rng, -3, 3),
    mineral: 0.78 + 0.32 * density,
    shaftHalfWidth: uniform(rng, 0.14, 0.18),
    condyleRadius: uniform(rng, 0.11, 0.135),
    gap: uniform(rng, 0.025, 0.06),
    legHalfWidth: uniform(rng, 0.46, 0.6),
    tissue: uniform(rng, 0.1, 0.2),
    textureSeed: rng.nextUint32(),
  };
}

function samplePose(rng: Rng, width: number): Pose {
  return {
    angle: (uniform(rng, -8, 8) * Math.PI) / 180,
    pixelsPerUnit: width * 0.7 * uniform(rng, 0.85, 1.15),
    shiftU: uniform(rng, -0.07, 0.07),
    shiftV: uniform(rng, -0.08, 0.08),
  };
}

function sampleExposure(rng: Rng): Exposure {
  return {
    gain: uniform(rng, 0.8, 1.15),
    gamma: uniform(rng, 0.8, 1.25),
    offset: uniform(rng, -0.03, 0.05),
    heel: uniform(rng, -0.12, 0.12),
    noise: uniform(rng, 0.01, 0.035),
    marker: rng.next() < 0.5 ? Math.floor(rng.next() * 4) : -1,
  };
}

/** Attenuation of one bone at a point, from its signed distance (negative inside). */
function boneAttenuation(distance: number, u: number, v: number, fromJoint: number, anatomy: Anatomy, aa: number): number {
  if (distance > aa) return 0;
  const inside = smoothstep(aa, -aa, distance);
  // The cortex is thick along the shafts and thin (a subchondral plate) near the joint; cancellous
  // bone fills the ends and gives way to the marrow cavity along the shaft.
  const alongShaft = smoothstep(0.1, 0.38, fromJoint);
  const localCortex = anatomy.cortex * (0.35 + 0.65 * alongShaft);
  const depth = -distance;
  const shell = smoothstep(localCortex + aa, localCortex - aa, depth);
  const cancellousWeight = 1 - smoothstep(0.3, 0.6, fromJoint);
  const cancellous = shell < 1 && cancellousWeight > 0 ? cancellousWeight * trabecular(u, v, anatomy) : 0;
  return inside * anatomy.mineral * (0.16 + 0.5 * shell + (1 - shell) * 0.36 * cancellous);
}

/** Render one radiograph as 8-bit grayscale. */
function render(width: number, height: number, anatomy: Anatomy, pose: Pose, exposure: Exposure, rng: Rng): Uint8Array {
  const out = new Uint8Array(width * height);
  const cos = Math.cos(pose.angle);
  const sin = Math.sin(pose.angle);
  const unitsPerPixel = 1 / pose.pixelsPerUnit;
  const aa = 1.2 * unitsPerPixel; // edges blend over about one pixel (anti-aliasing)
  const { shaftHalfWidth: shaft, condyleRadius: r, gap } = anatomy;
  const femurBottom = -gap / 2;
  const tibiaTop = gap / 2;
  const boneExtent = r * 2.3 + 0.1; // |u| beyond this is soft tissue only
  // Quantum noise: the four bytes of one 32-bit draw summed (Irwin–Hall(4) on a 256-step grid,
  // σ = √(4/12) in byte units scaled to one) — a quarter of the cost of four uniform draws.
  const noiseScale = (exposure.noise * Math.sqrt(3)) / 255;
  // Gamma through a table: Math.pow per pixel was a fifth of the render time.
  const gammaTable = new Float32Array(4097);
  for (let i = 0; i <= 4096; i++) gammaTable[i] = Math.pow(i / 4096, exposure.gamma);
  for (let py = 0; py < height; py++) {
    const y = (py + 0.5 - height / 2) * unitsPerPixel;
    const heel = 1 + exposure.heel * ((py + 0.5) / height - 0.5);
    for (let px = 0; px < width; px++) {
      // Pixel → anatomy coordinates (v points down the leg; the joint line is v = 0).
      const x = (px + 0.5 - width / 2) * unitsPerPixel;
      const u = cos * x - sin * y + pose.shiftU;
      const v = sin * x + cos * y + pose.shiftV;

      const legEdge = anatomy.legHalfWidth + 0.03 * Math.cos(v * 3);
      const inLeg = smoothstep(legEdge + aa, legEdge - aa, Math.abs(u));
      const across = u / legEdge;
      const thickness = across * across < 1 ? Math.sqrt(1 - across * across) : 0;
      let attenuation = anatomy.tissue * inLeg * (0.55 + 0.45 * thickness);

      if (Math.abs(u) < boneExtent) {
        if (v < femurBottom + aa) {
          // Femur: shaft flaring into two condyles; the patella projects over it as a faint oval.
          const femurShaft = boxSdf(u, v, 0, -0.75, shaft, 0.6, 0.02);
          const condyles = Math.min(circleSdf(u, v, -r * 0.95, femurBottom - r, r), circleSdf(u, v, r * 0.95, femurBottom - r, r));
          const metaphysis = boxSdf(u, v, 0, femurBottom - r - 0.08, r * 1.9, 0.09, 0.05);
          const femur = smin(femurShaft, Math.min(condyles, metaphysis), 0.08);
          attenuation += boneAttenuation(femur, u, v, femurBottom - v, anatomy, aa);
          const pu = (u - 0.02) / 0.12;
          const pv = (v - femurBottom + 0.2) / 0.15;
          attenuation += 0.06 * anatomy.mineral * smoothstep(1.1, 0.85, Math.sqrt(pu * pu + pv * pv));
        }
        if (v > tibiaTop - 0.05) {
          // Tibia: plateau with its spines, then the shaft; the fibula beside it.
          const plateau = boxSdf(u, v, 0, tibiaTop + 0.075, r * 2.15, 0.075, 0.035);
          const spines = circleSdf(u, v, 0, tibiaTop + 0.01, 0.03);
          const tibiaShaft = boxSdf(u, v, -0.01, tibiaTop + 0.7, shaft * 0.9, 0.6, 0.02);
          const tibia = smin(Math.min(plateau, spines), tibiaShaft, 0.1);
          attenuation += boneAttenuation(tibia, u, v, v - tibiaTop, anatomy, aa);
          const fibula = boxSdf(u, v, r * 2.05, tibiaTop + 0.75, 0.045, 0.6, 0.04);
          attenuation += boneAttenuation(fibula, u, v, v - tibiaTop, anatomy, aa);
        }
      }

      const linear = clamp01(exposure.gain * heel * (0.04 + attenuation) + exposure.offset);
      const bytes = rng.nextUint32();
      const noise = (bytes & 255) + ((bytes >>> 8) & 255) + ((bytes >>> 16) & 255) + (bytes >>> 24) - 510;
      const intensity = gammaTable[Math.round(linear * 4096)]! + noiseScale * noise;
      out[py * width + px] = Math.round(clamp01(intensity) * 255);
    }
  }
  if (exposure.marker >= 0) drawMarker(out, width, height, exposure.marker);
  return out;
}

/** A side marker ("L") in one corner, as radiographers place on films. */
function drawMarker(out: Uint8Array, width: number, height: number, corner: number): void {
  const markerW = Math.round(width * 0.07);
  const markerH = Math.round(width * 0.09);
  const left = corner & 1 ? width - markerW - Math.round(width * 0.05) : Math.round(width * 0.05);
  const top = corner & 2 ? height - markerH - Math.round(height * 0.05) : Math.round(height * 0.05);
  for (let y = top; y < top + markerH; y++) {
    for (let x = left; x < left + markerW; x++) {
      if (x - left < markerW * 0.3 || y - top > markerH * 0.7) out[y * width + x] = 235;
    }
  }
}

export interface PhantomImage {
  label: number;
  index: number;
  width: number;
  height: number;
  /** 8-bit grayscale, row-major. */
  pixels: Uint8Array;
  density: number;
  /** How the file is saved: format and whether as 1-channel or 3-channel. */
  format: 'png' | 'jpeg';
  rgb: boolean;
}

/** Render image `index` of class `label`; a pure function of (seed, label, index, size). */
export function renderPhantom(seed: number, label: number, index: number, size: number): PhantomImage {
  const rng = createRng(deriveSeed(seed, label, index));
  const portrait = rng.next() < 0.25;
  const width = size;
  const height = portrait ? Math.round(size * 1.25) : size;
  const anatomy = sampleAnatomy(rng, label);
  const pose = samplePose(rng, width);
  const exposure = sampleExposure(rng);
  const format = rng.next() < 0.35 ? 'jpeg' : 'png';
  const rgb = rng.next() < 0.2;
  const pixels = render(width, height, anatomy, pose, exposure, rng);
  return { label, index, width, height, pixels, density: anatomy.density, format, rgb };
}

function fileStem(label: number, index: number): string {
  return `${classNames[label]!.toLowerCase()}_${String(index).padStart(4, '0')}`;
}

async function encode(image: PhantomImage, format: 'png' | 'jpeg' | 'webp', quality = 92): Promise<Buffer> {
  let pipeline = sharp(Buffer.from(image.pixels.buffer, image.pixels.byteOffset, image.pixels.byteLength), {
    raw: { width: image.width, height: image.height, channels: 1 },
  });
  if (image.rgb) pipeline = pipeline.toColourspace('srgb');
  if (format === 'png') return pipeline.png({ compressionLevel: 6 }).toBuffer();
  if (format === 'webp') return pipeline.webp({ lossless: true }).toBuffer();
  return pipeline.jpeg({ quality }).toBuffer();
}

/** Decode a buffer back to 1-channel 8-bit pixels (what a JPEG's "same pixels" are). */
async function decodeGray(buffer: Buffer): Promise<Uint8Array> {
  const data = await sharp(buffer).extractChannel(0).raw().toBuffer();
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

/** The phantom film as DICOM, in the variant its index picks (see the header). */
function phantomDicom(image: PhantomImage, seed: number): Buffer {
  const common = { width: image.width, height: image.height, seed: `phantom:${seed}:${image.label}:${image.index}` };
  const variant = image.index % 3;
  // C.11.2.1.2 with centre 128 and width 256 is y = x / 255: the stored 8 bits, exactly.
  if (variant === 0) return writeDicom({ ...common, values: image.pixels, bitsStored: 8, photometric: 'MONOCHROME2', window: { center: 128, width: 256 } });
  if (variant === 1) return writeDicom({ ...common, values: image.pixels.map((v) => 255 - v), bitsStored: 8, photometric: 'MONOCHROME1', window: { center: 128, width: 256 } });
  const rng = createRng(deriveSeed(seed, image.label, image.index, 12));
  const values = Uint16Array.from(image.pixels, (v) => v * 16 + Math.floor(rng.next() * 16));
  // Modality values are stored − 1024; the window spans the 12-bit range in them.
  return writeDicom({ ...common, values, bitsStored: 12, photometric: 'MONOCHROME2', rescale: { slope: 1, intercept: -1024 }, window: { center: 1024, width: 4096 } });
}

function extension(format: 'png' | 'jpeg'): string {
  return format === 'png' ? 'png' : 'jpg';
}

export async function synthesizePhantom(options: SynthOptions): Promise<SynthResult> {
  const started = performance.now();
  const perClass = options.perClass ?? 60;
  const size = options.size ?? 256;
  const seed = options.seed ?? 42;
  if (!Number.isInteger(perClass) || perClass < 6) throw new UserError(`--per-class must be an integer ≥ 6 (planted duplicates need a few images), got ${perClass}`);
  if (!Number.isInteger(size) || size < 32 || size > 4096) throw new UserError(`--size must be an integer between 32 and 4096, got ${size}`);
  // As every other seed (train, split, cv, eval): a non-negative integer, so one seed names one phantom.
  if (!Number.isSafeInteger(seed) || seed < 0) throw new UserError(`--seed must be an integer ≥ 0, got ${seed}`);
  const dest = resolve(options.dest);
  const duplicateRate = options.duplicateRate ?? 0;
  const format = options.format ?? 'raster';
  if (!phantomFormats.includes(format)) throw new UserError(`--format must be one of ${phantomFormats.join(', ')}, got ${String(format)}`);
  if (!Number.isFinite(duplicateRate) || duplicateRate < 0 || duplicateRate > 0.9) throw new UserError(`--duplicate-rate must be a number from 0 to 0.9, got ${duplicateRate}`);
  if (existsSync(dest) && (await readdir(dest)).length > 0) {
    const isPhantom = existsSync(join(dest, 'phantom.json'));
    if (!isPhantom) throw new UserError(`${dest} is not empty and is not an osteo phantom (no phantom.json): osteo will not replace it; choose another --dest`);
    if (!options.force) {
      // The same phantom again is already there (images depend only on these settings): nothing to do,
      // so a tour or script can run synth twice; other settings would replace it, which needs --force.
      const existing = await readPhantomDescription(dest);
      const wanted = { seed, size, perClass, duplicateRate, format };
      const differing = (Object.keys(wanted) as (keyof typeof wanted)[]).filter((key) => existing?.[key] !== wanted[key]);
      if (existing !== undefined && differing.length === 0 && classNames.every((name) => existsSync(join(dest, name)))) {
        return { dest, files: existing.files, distinctPerClass: perClass, planted: existing.planted, expected: existing.expected, seconds: (performance.now() - started) / 1000, reused: true };
      }
      const what = existing === undefined ? 'an unreadable phantom.json' : differing.map((key) => `${key} ${existing[key]} (asked ${wanted[key]})`).join(', ');
      throw new UserError(`${dest} already holds another phantom (${what}); choose another --dest, or pass --force to replace it (files osteo did not write are kept)`);
    }
  }
  // Built beside the destination and switched in entry by entry, like the download: the user's own files in DEST stay.
  const made = await replaceEntries(dest, ownedEntries, (staging) => writePhantomFiles(staging, { seed, size, perClass, duplicateRate, format }));
  return { dest, ...made, distinctPerClass: perClass, seconds: (performance.now() - started) / 1000 };
}

/** Every image of the phantom, its planted copies and phantom.json, written into `staging`. */
async function writePhantomFiles(
  staging: string,
  { seed, size, perClass, duplicateRate, format: fileFormat }: { seed: number; size: number; perClass: number; duplicateRate: number; format: PhantomFormat },
): Promise<Pick<SynthResult, 'files' | 'planted' | 'expected'>> {
  for (const name of classNames) await mkdir(join(staging, name), { recursive: true });

  // Which images get copies: fixed positions spread over the class, the same for any seed.
  const pick = (fraction: number): number => Math.min(perClass - 1, Math.floor(perClass * fraction));
  const planted: PlantedDuplicate[] = [];
  const files = classNames.map(() => perClass);
  const tasks: { label: number; index: number }[] = [];
  for (let label = 0; label < classNames.length; label++) for (let index = 0; index < perClass; index++) tasks.push({ label, index });

  const written = new Map<string, { image: PhantomImage; path: string; buffer: Buffer }>();
  await mapLimit(tasks, 4, async ({ label, index }) => {
    const image = renderPhantom(seed, label, index, size);
    // Copies of a JPEG need its decoded pixels; force the PNG originals and the JPEG original the plan needs.
    const plannedPng = index === pick(0.1) || index === pick(0.5) || index === pick(0.9);
    const plannedJpeg = index === pick(0.3);
    const format = plannedPng ? 'png' : plannedJpeg ? 'jpeg' : fileFormat === 'dicom' ? 'dicom' : image.format;
    const buffer = format === 'dicom' ? phantomDicom(image, seed) : await encode(image, format);
    const path = `${classNames[label]}/${fileStem(label, index)}.${format === 'dicom' ? 'dcm' : extension(format)}`;
    await writeFile(join(staging, path), buffer);
    written.set(`${label}:${index}`, { image, path, buffer });
  });

  for (let label = 0; label < classNames.length; label++) {
    const stem = (index: number) => fileStem(label, index);
    // 1. The same PNG twice under different names, and once as lossless WebP.
    const a = written.get(`${label}:${pick(0.1)}`)!;
    const copyName = `${classNames[label]}/${stem(pick(0.1))} (copy).png`;
    const webpName = `${classNames[label]}/${stem(pick(0.1))}.webp`;
    await copyFile(join(staging, a.path), join(staging, copyName));
    await writeFile(join(staging, webpName), await encode(a.image, 'webp'));
    planted.push({ kind: 'exact', paths: [a.path, copyName, webpName] });
    // 2. A JPEG whose decoded pixels are saved again as PNG.
    const b = written.get(`${label}:${pick(0.3)}`)!;
    const resavedName = `${classNames[label]}/${stem(pick(0.3))}_resaved.png`;
    const decoded = await decodeGray(b.buffer);
    await writeFile(join(staging, resavedName), await encode({ ...b.image, pixels: decoded, rgb: false }, 'png'));
    planted.push({ kind: 'exact', paths: [b.path, resavedName] });
    // 3. A near duplicate: downscaled to 80% and saved as a lossy JPEG.
    const c = written.get(`${label}:${pick(0.5)}`)!;
    const smallName = `${classNames[label]}/${stem(pick(0.5))}_small.jpg`;
    const small = await sharp(c.buffer)
      .resize(Math.round(c.image.width * 0.8))
      .jpeg({ quality: 80 })
      .toBuffer();
    await writeFile(join(staging, smallName), small);
    planted.push({ kind: 'near', paths: [c.path, smallName] });
    files[label]! += 4;
  }
  // 4. One label conflict: an Osteopenia film filed again under Osteoporosis.
  const conflictSource = written.get(`1:${pick(0.9)}`)!;
  const conflictName = `Osteoporosis/${fileStem(1, pick(0.9))}_refiled.png`;
  await copyFile(join(staging, conflictSource.path), join(staging, conflictName));
  planted.push({ kind: 'conflict', paths: [conflictSource.path, conflictName] });
  files[2]! += 1;
  // 5. Kaggle-rate duplicates: c copies next to n distinct files make c / (n + c) = R. A copy of an
  // image planted above joins that image's group; the others make new exact-duplicate groups.
  const copies = Math.round((perClass * duplicateRate) / (1 - duplicateRate));
  for (const label of duplicatedClasses) {
    const rng = createRng(deriveSeed(seed, label, 0x64757073));
    const groups = new Map<string, PlantedDuplicate>();
    for (let copy = 0; copy < copies; copy++) {
      const source = written.get(`${label}:${Math.floor(rng.next() * perClass)}`)!;
      const name = `${classNames[label]}/${fileStem(label, source.image.index)} (dup ${copy})${source.path.slice(source.path.lastIndexOf('.'))}`;
      await copyFile(join(staging, source.path), join(staging, name));
      let group = groups.get(source.path) ?? planted.find((p) => p.kind === 'exact' && p.paths[0] === source.path);
      if (group === undefined) {
        group = { kind: 'exact', paths: [source.path] };
        planted.push(group);
      }
      groups.set(source.path, group);
      group.paths.push(name);
    }
    files[label]! += copies;
  }

  const expected = {
    files: files.reduce((s, n) => s + n, 0),
    exactDuplicateGroups: planted.filter((p) => p.kind !== 'near').length,
    nearDuplicateGroups: planted.filter((p) => p.kind === 'near').length,
    conflicts: 1,
  };
  const description = {
    generator: 'osteo data synth',
    seed,
    size,
    perClass,
    duplicateRate,
    format: fileFormat,
    classes: classNames,
    files,
    expected,
    planted,
    note: 'Synthetic knee radiographs for tests and demos; not medical data.',
  };
  await writeFile(join(staging, 'phantom.json'), JSON.stringify(description, null, 2) + '\n');
  return { files, planted, expected };
}
