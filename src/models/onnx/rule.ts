/**
 * What a gradient rule (grad.ts, window-grad.ts) is given and the helpers the rules share.
 */
import { int, type GraphBuilder, type GraphNode } from './graph.js';
import type { Shape } from './shapes.js';

/** What a rule sees: the builder, every forward value's shape, constants' values, and which inputs want a gradient. */
export interface RuleContext {
  b: GraphBuilder;
  shape(name: string): Shape;
  constant(name: string): readonly number[];
  needs(name: string): boolean;
  /** How each convolution's gradients are written (default: window-grad.ts's choice by shape). */
  convFormulation?: (node: GraphNode) => ConvFormulation;
}

/**
 * The ONNX formulations of a convolution's input gradient (a ConvTranspose; a Conv of the
 * zero-inserted gradient with the flipped filter; a MatMul onto patches summed back in place) and of
 * its filter gradient (a Conv of the re-laid input with the re-laid gradient; a MatMul of the
 * gradient with the input's patches). bench/onnx-conv-grad.ts measures them.
 */
export interface ConvFormulation {
  input: 'transpose' | 'conv' | 'patches';
  filter: 'conv' | 'patches';
}

/** The gradient of each of `node`'s inputs (undefined: none, or not wanted) from its first output's gradient `dy`. */
export type Rule = (node: GraphNode, dy: string, ctx: RuleContext) => (string | undefined)[];

/** A sub-graph differentiated as one: `backward` gives the gradients of `inputs` from the gradient of the output it is keyed by. */
export interface GradientOverride {
  inputs: readonly string[];
  backward(dy: string, ctx: RuleContext): (string | undefined)[];
}

export const product = (values: readonly number[]): number => values.reduce((a, b) => a * b, 1);

/** Sums a broadcast result's gradient `g` (shape `from`) back to an operand of shape `to`. */
export function unbroadcast(ctx: RuleContext, g: string, from: Shape, to: Shape, stem: string): string {
  if (from.join(',') === to.join(',')) return g;
  const padded = [...from.slice(0, from.length - to.length).map(() => 1), ...to];
  const axes = padded.flatMap((d, i) => (d === 1 && from[i] !== 1 ? [i] : []));
  const summed = axes.length === 0 ? g : ctx.b.node('ReduceSum', [g, ctx.b.int64(axes)], `${stem}_sum`, { keepdims: int(1) });
  return to.length === from.length ? summed : ctx.b.node('Reshape', [summed, ctx.b.int64(to)], `${stem}_shape`);
}

/** For each input: its gradient if wanted (`make` emits it), else undefined. */
export function wanted(node: GraphNode, ctx: RuleContext, make: (index: number) => string): (string | undefined)[] {
  return node.inputs.map((input, index) => (ctx.needs(input) ? make(index) : undefined));
}
