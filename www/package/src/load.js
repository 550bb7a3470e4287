// @ts-check
// Loading a model: a WebGPU device, then the shards' bytes (./fetch.js) pushed through the wasm
// streaming loader straight into GPU buffers, then the kernels compiled. The memory plan is made
// at the first header, so a model or context that does not fit fails before the weights download.

import init, { createGpu, ModelLoader } from '../wasm/llama_webgpu.js';
import { ErrorCode, LlamaError, abortError, toLlamaError } from './errors.js';
import { openShards, probeShards } from './fetch.js';
import { describeAdapter, engineInfo } from './load-info.js';
import { LoadReporter } from './progress.js';
import { resolveSource } from './sources.js';
import { requireWebGpu } from './webgpu.js';

/** @typedef {import('./sources.js').ModelSource} ModelSource */
/** @typedef {import('./load-info.js').LoadOptions} LoadOptions */
/** @typedef {import('./load-info.js').EngineInfo} EngineInfo */
/** @typedef {import('./load-info.js').LoadInfo} LoadInfo */

/** Bytes handed to wasm per call: bounds the wasm heap growth a load can cause. */
const PUSH_BYTES = 1 << 20;

/** @type {ReturnType<typeof init> | undefined} */
let wasmInit;

/**
 * Instantiates the wasm module once (from `wasmUrl`, or the file shipped beside this one).
 * @param {string} [wasmUrl]
 */
export function initWasm(wasmUrl) {
  wasmInit ??= init({ module_or_path: wasmUrl ?? new URL('../wasm/llama_webgpu_bg.wasm', import.meta.url) });
  return wasmInit;
}

/**
 * A WebGPU device with the adapter's description filled in (wgpu cannot see it), checked
 * against the requested precision.
 * @param {LoadOptions} options
 * @param {'auto' | 'f16' | 'f32'} precision
 */
async function openGpu(options, precision) {
  let gpu;
  try {
    gpu = await createGpu({
      allowF16: precision !== 'f32',
      allowSubgroups: options.subgroups !== false,
      intDot: options.intDot,
      tuning: options.tuning,
      maxStorageBinding: options.maxStorageBinding,
    });
  } catch (e) {
    throw toLlamaError(e, ErrorCode.NO_WEBGPU);
  }
  const gpuInfo = gpu.info();
  await describeAdapter(gpuInfo);
  if (precision === 'f16' && !gpuInfo.features.shaderF16) {
    gpu.free();
    throw new LlamaError(ErrorCode.NO_WEBGPU, "precision 'f16' was requested but this adapter has no shader-f16");
  }
  return { gpu, gpuInfo };
}

/**
 * Checks {@link LoadOptions.tuning}.
 * @param {unknown} tuning
 */
function checkTuning(tuning) {
  if (tuning === undefined) return;
  const bad = (/** @type {string} */ what) => new LlamaError(ErrorCode.INVALID_ARGUMENT, `tuning: ${what}`);
  if (tuning === null || typeof tuning !== 'object') throw bad(`expected an object, got ${tuning}`);
  const t = /** @type {Record<string, unknown>} */ (tuning);
  const limits = { matvecThreads: 64, matvecRows: 4 };
  for (const [k, v] of Object.entries(t)) {
    if (v === undefined) continue;
    if (k === 'norm' || k === 'swiglu' || k === 'join') {
      if (v !== 'fused' && v !== 'separate') throw bad(`${k} must be 'fused' or 'separate', got ${v}`);
    } else if (k === 'chain') {
      if (v !== 'on' && v !== 'off') throw bad(`chain must be 'on' or 'off', got ${v}`);
    } else if (k === 'matvecThreads' || k === 'matvecRows') {
      const max = limits[k];
      if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > max || (v & (v - 1)) !== 0) {
        throw bad(`${k} must be a power of two from 1 to ${max}, got ${v}`);
      }
    } else {
      throw bad(`unknown key '${k}' (known: norm, swiglu, join, chain, matvecThreads, matvecRows)`);
    }
  }
}

/**
 * Loads a GGUF model (URL, URL list, File or File list; split shards are discovered) onto a new
 * GPU device. On failure, or when `signal` aborts, everything allocated is freed.
 * @param {ModelSource} source
 * @param {LoadOptions} [options]
 * @returns {Promise<{gpu: import('../wasm/llama_webgpu.js').Gpu, engine: import('../wasm/llama_webgpu.js').Engine, info: EngineInfo}>}
 * @throws {LlamaError} NO_WEBGPU, NETWORK_ERROR, BAD_GGUF, BAD_SPLIT, OUT_OF_MEMORY, ABORTED, ...
 */
export async function loadModel(source, options = {}) {
  const { onProgress, signal, contextSize, cache = true, precision = 'auto' } = options;
  const started = performance.now();
  if (signal?.aborted) throw abortError(signal);
  const wasm = await initWasm(options.wasmUrl);
  requireWebGpu();
  if (!['auto', 'f16', 'f32'].includes(precision)) {
    throw new LlamaError(ErrorCode.INVALID_ARGUMENT, `precision must be 'auto', 'f16' or 'f32', got ${precision}`);
  }
  if (options.subgroups !== undefined && typeof options.subgroups !== 'boolean') {
    throw new LlamaError(ErrorCode.INVALID_ARGUMENT, `subgroups must be true or false, got ${options.subgroups}`);
  }
  if (options.intDot !== undefined && typeof options.intDot !== 'boolean') {
    throw new LlamaError(ErrorCode.INVALID_ARGUMENT, `intDot must be true or false, got ${options.intDot}`);
  }
  checkTuning(options.tuning);
  if (options.chatTemplate !== undefined && typeof options.chatTemplate !== 'string') {
    throw new LlamaError(ErrorCode.INVALID_ARGUMENT, `chatTemplate must be a string (a Jinja template), got ${typeof options.chatTemplate}`);
  }
  const { gpu, gpuInfo } = await openGpu(options, precision);
  // The memory plan is made at the first header: it fixes the context (this one, or by
  // default the model's, at most 4096 and at most what the device's limits allow), allocates
  // the KV cache and reserves the rest, so a model that does not fit fails before its
  // weights download.
  /** @type {ModelLoader | null} */
  let loader = null;
  try {
    loader = new ModelLoader(gpu, contextSize);
    // Compiled now, so a template that does not compile fails before the model downloads.
    if (options.chatTemplate !== undefined) loader.setChatTemplate(options.chatTemplate);
  } catch (e) {
    loader?.free();
    gpu.free();
    throw toLlamaError(e, ErrorCode.INVALID_ARGUMENT);
  }
  const progress = new LoadReporter(onProgress);
  let cachedBytes = 0;
  /** @type {LoadInfo['warnings']} */
  const warnings = [];
  try {
    const shards = resolveSource(source);
    await probeShards(shards, { signal });
    progress.totalBytes = shards.reduce((a, s) => a + (s.size ?? 0), 0);
    if (shards.every((s) => s.size != null)) loader.setExpectedBytes(progress.totalBytes);
    progress.report();
    /** @type {import('./progress.js').StreamEventHandler} */
    const onEvent = (ev) => {
      if (ev.type === 'download') {
        progress.bytesPerSecond = ev.bytesPerSecond;
      } else if (ev.type === 'warning') {
        warnings.push({ code: ev.code, message: ev.message });
        options.onWarning?.(ev);
      }
    };
    for await (const shard of openShards(shards, { signal, cache, onEvent, sha256: options.sha256, retries: options.retries })) {
      progress.phase = shard.fromCache || !shards[shard.index].url ? 'upload' : 'download';
      if (shard.fromCache) cachedBytes += shard.size;
      loader.beginShard(shard.size);
      for await (const chunk of shard.chunks) {
        if (signal?.aborted) throw abortError(signal);
        for (let at = 0; at < chunk.length; at += PUSH_BYTES) {
          loader.push(chunk.subarray(at, Math.min(chunk.length, at + PUSH_BYTES)));
          progress.loadedBytes += Math.min(PUSH_BYTES, chunk.length - at);
          const before = progress.counts.headersParsed ?? 0;
          // Read from the loader only between its calls: finish() borrows it while it compiles.
          progress.counts = loader.progress();
          if ((progress.counts.headersParsed ?? 0) > before) {
            // The header just allocated this shard's GPU buffers: if they did not fit, say
            // so now rather than after downloading the rest.
            await loader.checkMemory();
          }
          progress.maybeReport();
        }
      }
      loader.endShard();
      progress.counts = loader.progress();
    }
    if (signal?.aborted) throw abortError(signal);
    progress.phase = 'compile';
    progress.report();
    const engine = await loader.finish();
    loader = null;
    if (signal?.aborted) throw abortError(signal);
    const info = engineInfo({
      model: engine.info(),
      gpu: gpuInfo,
      source: shards.map((s) => s.url ?? s.name),
      totalBytes: progress.totalBytes,
      seconds: (performance.now() - started) / 1000,
      fromCacheBytes: cachedBytes,
      // Wasm memory never shrinks, so its size now is the peak of this load.
      wasmMemoryBytes: wasm.memory.buffer.byteLength,
      warnings,
    });
    progress.loadedBytes = progress.totalBytes;
    progress.report();
    return { gpu, engine, info };
  } catch (e) {
    // Dropping the loader and the device releases every GPU buffer made so far.
    loader?.free();
    gpu.free();
    throw signal?.aborted ? abortError(signal) : toLlamaError(e, ErrorCode.BAD_GGUF);
  } finally {
    progress.stop();
  }
}
