/** The Grad-CAM colour ramp of the page (pure, so the web test can import it in Node). */

/** A perceptual blue → cyan → green → yellow → red ramp (a compact "turbo"-like colour map), t in [0,1]: Grad-CAM overlays in Node (gradcam.ts) and in the page. */
export function heatColor(t: number): [number, number, number] {
  const stops: [number, [number, number, number]][] = [
    [0, [48, 18, 59]],
    [0.25, [40, 140, 235]],
    [0.5, [60, 220, 120]],
    [0.75, [250, 190, 40]],
    [1, [180, 20, 10]],
  ];
  const v = Math.min(1, Math.max(0, t));
  for (let i = 1; i < stops.length; i++) {
    const [t1, c1] = stops[i]!;
    const [t0, c0] = stops[i - 1]!;
    if (v <= t1) {
      const f = (v - t0) / (t1 - t0);
      return [0, 1, 2].map((k) => Math.round(c0[k]! + f * (c1[k]! - c0[k]!))) as [number, number, number];
    }
  }
  return stops[stops.length - 1]![1];
}
