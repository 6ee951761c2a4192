/** models: torchvision-exact architectures built with tfjs-layers, one file each with its weight tags (checkpoint, hash, licence, eval transform), the registry that holds every fact about them, and their ONNX graphs (onnx/: one emitter per layer class). */
export { getModel, listModels, modelNames, registry, ModelRegistry, listWeightTags, getWeightsTag, weightsTagOfFile } from './registry.js';
export { torchvisionTag, transformAt, type Interpolation, type TagTransform, type WeightsTag } from './tags.js';
export { freezeUntilStage, seedModelRandomness, minImageSize } from './common.js';
export { TorchBatchNorm, TorchLayerNorm, LayerScale, SeededDropout, StochasticDepth } from './layers.js';
export { resnetTable } from './resnet.js';
export { efficientnetTable, makeDivisible, adjustChannels, adjustDepth } from './efficientnet.js';
export { densenetTable } from './densenet.js';
export { convnextTable } from './convnext.js';
export type { HeadKind, ModelBuildOptions, ModelEntry, ModelEntryOf, ModelName } from './types.js';
export { modelToOnnxGraph, onnxLayerClasses, onnxInputName, onnxOutputName, onnxBatchDimension } from './onnx/emit.js';
export { camGraphOf, onnxCamOutputName, type CamGraph as OnnxCamGraph } from './onnx/cam.js';
export { onnxOpset, type OnnxGraph, type GraphNode, type Attribute as OnnxAttribute, type ValueInfo as OnnxValueInfo, type WeightRef as OnnxWeightRef, type Constant as OnnxConstant } from './onnx/graph.js';
export { stepGraphOf, gradientOutputName, statisticOutputName, maskInputName, stepCoefficientsName, stepLossScaleName, stepLossName, type StepGraph, type StepGraphOptions, type StepMask } from './onnx/step.js';
export type { ConvFormulation } from './onnx/rule.js';
