// @ts-check
// What a model takes in GPU memory on a device, before any byte of it is downloaded: the engine's
// own plan (src/model/memory.rs, through the wasm's `memoryPlan`), the arithmetic the loader
// allocates by, so an app's estimate and the load agree.

import { memoryPlan } from '../wasm/llama_webgpu.js';
import { ErrorCode, toLlamaError } from './errors.js';
import { initWasm } from './load.js';

/**
 * Runs the plan in the calling thread, instantiating the wasm there the first time.
 * @param {ModelShape} shape
 * @param {PlanOptions} options
 * @returns {Promise<import('./load-info.js').MemoryPlan>}
 */
export async function planMemory(shape, options) {
  const { device, weightsBytes = 0, contextSize, wasmUrl } = options ?? {};
  await initWasm(wasmUrl);
  try {
    return memoryPlan(shape, weightsBytes, contextSize, device);
  } catch (e) {
    throw toLlamaError(e, ErrorCode.INVALID_ARGUMENT);
  }
}

/**
 * A model's sizes, as `engine.info.model` gives them (or as a model card states them).
 * @typedef {object} ModelShape
 * @property {number} nLayer Transformer blocks.
 * @property {number} nEmbd Embedding width.
 * @property {number} nHead Query heads.
 * @property {number} nHeadKv Key/value heads.
 * @property {number} [headDim] Size of a head (default: `nEmbd / nHead`).
 * @property {number} nFf Feed-forward width.
 * @property {number} nVocab Vocabulary size.
 * @property {number} contextLength The context length the model was trained for.
 */

/**
 * The device to plan for, and what to plan.
 * @typedef {object} PlanOptions
 * @property {{shaderF16: boolean, maxBufferSize: number, maxStorageBufferBindingSize: number}} device The
 *   adapter's feature and limits: with `shader-f16` the KV cache is f16 (as the engine allocates
 *   it unless `precision: 'f32'`), and the buffer limits bound the context.
 * @property {number} [weightsBytes] The weights' size, e.g. the shards' total (default 0: the plan
 *   then counts only the KV cache and the activations).
 * @property {number} [contextSize] The context to plan for, capped at the model's context length
 *   (default: the one a load without `contextSize` picks: the model's, at most 4096 and at most
 *   what the device's limits allow).
 * @property {string} [wasmUrl] URL of `llama_webgpu_bg.wasm` when it is not served beside the
 *   package's `src/` (as the load option of that name).
 */
