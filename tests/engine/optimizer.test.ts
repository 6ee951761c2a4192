/**
 * The engine's optimizers and gradient clipping against torch.optim (PyTorch 1.13 through
 * /usr/bin/python3): the same parameters and gradient sequence, several steps, every option.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { FlatOptimizer, ReplicaReduce, clipCoefficient, type OptimizerConfig } from '../../src/engine/index.js';

/**
 * One optimizer step the way the engine takes it, with a single replica: ReplicaReduce sums the
 * gradient (and its squares for the global norm), the clip coefficient follows from the norm, and
 * the update applies step t. Returns the norm before clipping.
 */
function engineStep(optimizer: FlatOptimizer, params: Float32Array, grad: Float32Array, lr: number, clip?: number): number {
  const reduce = new ReplicaReduce(optimizer.config, { replicaGrads: [grad], reduced: new Float32Array(grad.length), params, slots: optimizer.slotArrays });
  const norm = Math.sqrt(reduce.reduce(0, grad.length));
  reduce.update(0, grad.length, lr, optimizer.advance(), clipCoefficient(norm, clip));
  return norm;
}
import { rng } from '../helpers/random.js';
import { referenceTest, runPython } from '../fixtures/torch/python.js';

const torchScript = String.raw`
import json, sys
import torch
job = json.load(sys.stdin)
out = []
for case in job["cases"]:
    p = torch.nn.Parameter(torch.tensor(job["params"], dtype=torch.float32))
    c = case["config"]
    if c["type"] == "adam":
        opt = torch.optim.Adam([p], lr=case["lr"], betas=(c.get("beta1", 0.9), c.get("beta2", 0.999)), eps=c.get("eps", 1e-8), weight_decay=c.get("weightDecay", 0))
    elif c["type"] == "adamw":
        opt = torch.optim.AdamW([p], lr=case["lr"], betas=(c.get("beta1", 0.9), c.get("beta2", 0.999)), eps=c.get("eps", 1e-8), weight_decay=c["weightDecay"])
    else:
        opt = torch.optim.SGD([p], lr=case["lr"], momentum=c.get("momentum", 0), nesterov=c.get("nesterov", False), weight_decay=c.get("weightDecay", 0))
    norms = []
    for g in job["grads"]:
        p.grad = torch.tensor(g, dtype=torch.float32)
        if case.get("clip") is not None:
            norms.append(float(torch.nn.utils.clip_grad_norm_([p], case["clip"])))
        opt.step()
    out.append({"params": p.detach().tolist(), "norms": norms})
print(json.dumps(out))
`;

referenceTest(test, 'Adam, AdamW, SGD (momentum, Nesterov, weight decay) and clip_grad_norm_ match torch.optim', () => {
  const next = rng(3);
  const n = 37;
  const params = Array.from({ length: n }, () => next() * 2 - 1);
  const grads = Array.from({ length: 6 }, () => Array.from({ length: n }, () => (next() * 2 - 1) * 0.5));
  const cases: Array<{ config: OptimizerConfig; lr: number; clip?: number }> = [
    { config: { type: 'adam' }, lr: 1e-2 },
    { config: { type: 'adam', beta1: 0.8, beta2: 0.99, eps: 1e-6, weightDecay: 0.05 }, lr: 3e-3 },
    { config: { type: 'adamw', weightDecay: 0.01 }, lr: 1e-2, clip: 0.7 },
    { config: { type: 'sgd' }, lr: 0.1 },
    { config: { type: 'sgd', momentum: 0.9, weightDecay: 1e-3 }, lr: 0.05, clip: 1.5 },
    { config: { type: 'sgd', momentum: 0.9, nesterov: true, weightDecay: 1e-4 }, lr: 0.05 },
  ];
  const output = runPython({ code: torchScript }, [], { input: JSON.stringify({ params, grads, cases }) });
  const expected = JSON.parse(output) as Array<{ params: number[]; norms: number[] }>;
  cases.forEach((c, index) => {
    const p = Float32Array.from(params);
    const optimizer = new FlatOptimizer(c.config, n);
    const norms: number[] = [];
    for (const g of grads) {
      const grad = Float32Array.from(g);
      const norm = engineStep(optimizer, p, grad, c.lr, c.clip);
      if (c.clip !== undefined) norms.push(norm);
    }
    const want = expected[index]!;
    for (let i = 0; i < n; i++) {
      assert.ok(Math.abs(p[i]! - want.params[i]!) <= 2e-6 * Math.max(1, Math.abs(want.params[i]!)), `${JSON.stringify(c)}: param ${i} ${p[i]} vs torch ${want.params[i]}`);
    }
    norms.forEach((norm, i) => assert.ok(Math.abs(norm - want.norms[i]!) < 1e-5 * want.norms[i]!, `norm ${norm} vs ${want.norms[i]}`));
    assert.is(optimizer.steps, grads.length);
  });
});

test('optimizer state exports and imports exactly', () => {
  const config: OptimizerConfig = { type: 'adam', weightDecay: 0.1 };
  const a = new FlatOptimizer(config, 4);
  const p = Float32Array.of(1, -2, 3, 0.5);
  engineStep(a, p, Float32Array.of(0.1, 0.2, -0.3, 0.4), 0.01);
  const b = new FlatOptimizer(config, 4);
  b.importState(a.exportState());
  const q = p.slice();
  engineStep(a, p, Float32Array.of(-0.5, 0.1, 0.1, 0.2), 0.01);
  engineStep(b, q, Float32Array.of(-0.5, 0.1, 0.1, 0.2), 0.01);
  assert.equal(Array.from(p), Array.from(q));
  assert.throws(() => b.importState({ step: 1, slots: {} }), /exp_avg/);
  assert.throws(() => new FlatOptimizer({ type: 'sgd', nesterov: true }, 2), /Nesterov/);
});

test.run();
