/**
 * Conv2DBackpropFilter for the WebGPU backend as matrix products. tfjs-backend-webgpu 4.22 runs it
 * naively: one invocation per filter element, each looping over batch × height × width, so a
 * ResNet stage's filter gradient is a few hundred long serial loops. Here it is one product per
 * filter tap over re-laid tensors,
 *
 *   dW[i, j] = X_ij^T · dY,  X_ij = x padded, shifted by the tap (i·dh, j·dw) and strided: [N·Ho·Wo, Cin],
 *
 * with dY as [N·Ho·Wo, Cout]. The reduction runs over N·Ho·Wo, which is what the backend's split-K
 * matmul program is for (many workgroups over the long inner dimension, atomic adds into a small
 * Cin × Cout output). Each tap's copy is the size of the input, one at a time.
 */
import * as tf from '@tensorflow/tfjs-core';

type Info = tf.TensorInfo;
type Backend = tf.KernelBackend & { disposeData(dataId: tf.DataId): boolean };
type Args = { inputs: { x: Info; dy: Info }; backend: Backend; attrs: Record<string, unknown> };
type Fallback = (args: Args) => Info;

function call(kernel: string, backend: Backend, inputs: Record<string, Info> | Info[], attrs: Record<string, unknown> = {}): Info {
  const found = tf.getKernel(kernel, 'webgpu');
  if (!found) throw new Error(`the webgpu backend has no ${kernel} kernel`);
  return found.kernelFunc({ inputs: inputs as tf.NamedTensorInfoMap, backend, attrs: attrs as tf.NamedAttrMap }) as Info;
}

export function conv2DBackpropFilterWebgpu(args: Args, fallback: Fallback): Info {
  const { inputs, backend, attrs } = args;
  const { x, dy } = inputs;
  const dataFormat = (attrs['dataFormat'] as string | undefined) ?? 'NHWC';
  if (dataFormat !== 'NHWC' || x.shape.length !== 4) return fallback(args);
  const filterShape = attrs['filterShape'] as [number, number, number, number];
  const info = tf.backend_util.computeConv2DInfo(
    x.shape as [number, number, number, number],
    filterShape,
    attrs['strides'] as [number, number] | number,
    1,
    attrs['pad'] as 'valid' | 'same' | number | tf.backend_util.ExplicitPadding,
    attrs['dimRoundingMode'] as 'floor' | 'round' | 'ceil' | undefined,
    false,
    'channelsLast',
  );
  const [n, h, w, cin] = x.shape as [number, number, number, number];
  const { outHeight: ho, outWidth: wo, strideHeight: sh, strideWidth: sw, dilationHeight: dh, dilationWidth: dw, filterHeight: kh, filterWidth: kw } = info;
  const cout = dy.shape[3]!;
  const rows = n * ho * wo;
  const temporaries: Info[] = [];
  const keep = (t: Info) => (temporaries.push(t), t);
  try {
    // pad so that every tap's strided window lies inside: top/left by the convolution's padding, bottom/right as far as the last tap reaches
    const top = info.padInfo.top;
    const left = info.padInfo.left;
    const needH = (kh - 1) * dh + (ho - 1) * sh + 1;
    const needW = (kw - 1) * dw + (wo - 1) * sw + 1;
    const bottom = Math.max(0, needH - top - h);
    const right = Math.max(0, needW - left - w);
    const padded =
      top + bottom + left + right === 0
        ? x
        : keep(call(tf.PadV2, backend, { x }, { paddings: [[0, 0], [top, bottom], [left, right], [0, 0]], constantValue: 0 }));
    const dyRows = keep(call(tf.Reshape, backend, { x: dy }, { shape: [1, rows, cout] }));
    const paddedH = padded.shape[1]!;
    const paddedW = padded.shape[2]!;
    const taps: Info[] = [];
    for (let i = 0; i < kh; i++) {
      for (let j = 0; j < kw; j++) {
        const identity = sh === 1 && sw === 1 && i * dh === 0 && j * dw === 0 && ho === paddedH && wo === paddedW;
        const window = identity
          ? padded
          : keep(
              call(tf.StridedSlice, backend, { x: padded }, {
                begin: [0, i * dh, j * dw, 0],
                end: [n, i * dh + (ho - 1) * sh + 1, j * dw + (wo - 1) * sw + 1, cin],
                strides: [1, sh, sw, 1],
                beginMask: 0,
                endMask: 0,
                ellipsisMask: 0,
                newAxisMask: 0,
                shrinkAxisMask: 0,
              }),
            );
        const windowRows = keep(call(tf.Reshape, backend, { x: window }, { shape: [1, rows, cin] }));
        const product = keep(call(tf.BatchMatMul, backend, { a: windowRows, b: dyRows }, { transposeA: true, transposeB: false }));
        // free the tap's copy before the next one: only one input-sized copy at a time
        if (window !== padded) release(backend, temporaries, window);
        release(backend, temporaries, windowRows);
        taps.push(product);
      }
    }
    const stacked = taps.length === 1 ? taps[0]! : keep(call(tf.Concat, backend, taps, { axis: 0 }));
    return call(tf.Reshape, backend, { x: stacked }, { shape: filterShape });
  } finally {
    for (const t of temporaries) backend.disposeData(t.dataId);
  }
}

function release(backend: Backend, temporaries: Info[], t: Info): void {
  const at = temporaries.indexOf(t);
  if (at >= 0) temporaries.splice(at, 1);
  backend.disposeData(t.dataId);
}
