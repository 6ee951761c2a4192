/**
 * onnxruntime's bundled WebGPU provider (its own Dawn) on whatever adapter this machine has: in CI,
 * Mesa's lavapipe (see .ci/run). The ONNX graphs of ResNet18 and ConvNeXt-Tiny (convolutions, pooling
 * and BatchNorm; depthwise conv, LayerNorm, exact GELU and the channels-last Linears) give the CPU
 * provider's logits. Small inputs only: lavapipe compiles every shader on the CPU.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createOnnxSession, useBackend } from '../../src/backend/index.js';
import { probeAdapterInChild } from '../../src/backend/webgpu.js';
import { getModel } from '../../src/models/index.js';
import { modelToOnnx } from '../../src/weights/index.js';
import { testWith, type Requirement } from '../helpers/requirements.js';

/** Mesa warns on every start without it (and it is unset in some CI shells). */
process.env['XDG_RUNTIME_DIR'] ??= '/tmp';

/** A Vulkan adapter Dawn can open, looked at through the webgpu package's Dawn (the same driver onnxruntime's Dawn uses). */
const vulkanAdapter: Requirement = {
  name: 'a WebGPU adapter for Dawn (a Vulkan driver)',
  install: 'on Debian 12: apt-get install -t bookworm-backports mesa-vulkan-drivers (see .ci/run)',
  probe() {
    const probe = probeAdapterInChild();
    if (probe === undefined) return 'the webgpu package, which probes the adapter, is not installed';
    return 'reason' in probe ? probe.reason : null;
  },
};

const size = 32;

for (const name of ['resnet18', 'convnext_tiny'] as const) {
  testWith(vulkanAdapter, test, `${name}: the ONNX graph on onnxruntime's webgpu provider gives the cpu provider's logits (1e-4)`, async () => {
    await useBackend('wasm');
    const model = getModel(name).build({ imageSize: size, seed: 17 });
    let bytes: Uint8Array;
    try {
      bytes = (await modelToOnnx(model, name)).bytes;
    } finally {
      model.dispose();
    }
    const label = { model: name, imageSize: size };
    const input = Float32Array.from({ length: 2 * 3 * size * size }, (_, i) => Math.sin(i * 0.291));
    const shape = [2, 3, size, size];
    const gpu = await createOnnxSession(bytes, { provider: 'webgpu', label });
    const cpu = await createOnnxSession(bytes, { provider: 'cpu', threads: 1, label });
    try {
      assert.is(gpu.provider, 'webgpu');
      const [ours, reference] = [await gpu.run(input, shape), await cpu.run(input, shape)];
      const scale = Math.max(1, ...Array.from(reference, Math.abs));
      for (let i = 0; i < reference.length; i++) assert.ok(Math.abs(ours[i]! - reference[i]!) <= 1e-4 * scale, `logit ${i}: webgpu ${ours[i]} vs cpu ${reference[i]}`);
      assert.ok(Math.abs(reference[0]! - reference[3]!) + Math.abs(reference[1]! - reference[4]!) > 1e-4, 'the logits depend on the input');
    } finally {
      await gpu.release();
      await cpu.release();
    }
  });
}

test.run();
