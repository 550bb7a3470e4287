// The engine in the current thread: model bytes from ./fetch.js go through the wasm streaming
// loader straight into GPU buffers; requests in OpenAI's shapes become token-by-token steps of
// the wasm engine. `index.js` runs this same class in a Web Worker by default.

import init, { createGpu, ModelLoader } from '../wasm/llama_webgpu.js';
import { resolveSource, probeShards, openShards, hasInCache, deleteFromCache } from './fetch.js';
import { ErrorCode, LlamaError, abortError, toLlamaError } from './errors.js';

/** Bytes handed to wasm per call: bounds the wasm heap growth a load can cause. */
const PUSH_BYTES = 1 << 20;
const PROGRESS_MS = 100;

let wasmInit;
/** Instantiates the wasm module once (from `wasmUrl`, or the file shipped beside this one). */
export function initWasm(wasmUrl) {
  wasmInit ??= init({ module_or_path: wasmUrl ?? new URL('../wasm/llama_webgpu_bg.wasm', import.meta.url) });
  return wasmInit;
}

/** Whether this browser can run the engine: WebGPU with an adapter. */
export async function isSupported() {
  try {
    return !!(globalThis.navigator?.gpu && (await navigator.gpu.requestAdapter()));
  } catch {
    return false;
  }
}

function throwIfAborted(signal) {
  if (signal?.aborted) throw abortError(signal);
}

let idCounter = 0;
const newId = (prefix) => `${prefix}-${Date.now().toString(36)}${(idCounter++).toString(36)}`;

/** OpenAI request fields → the wasm engine's parameters (JSON, snake_case). */
function samplingParams(req, info, promptTokens) {
  const num = (name, v, lo, hi) => {
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'number' || !Number.isFinite(v) || v < lo || v > hi) {
      throw new LlamaError(ErrorCode.INVALID_SAMPLING_PARAMS, `${name} must be a number in [${lo}, ${hi}], got ${v}`);
    }
    return v;
  };
  if (req.n !== undefined && req.n !== null && req.n !== 1) {
    throw new LlamaError(ErrorCode.INVALID_ARGUMENT, `n = ${req.n} is not supported: one choice per request`);
  }
  const room = info.contextSize - promptTokens;
  const maxTokens = num('max_tokens', req.max_tokens ?? req.max_completion_tokens, 0, Number.MAX_SAFE_INTEGER) ?? room;
  const p = {
    max_tokens: Math.min(maxTokens, room),
    stop: req.stop === undefined || req.stop === null ? [] : Array.isArray(req.stop) ? req.stop : [req.stop],
    ignore_eos: !!req.ignore_eos,
  };
  const t = num('temperature', req.temperature, 0, 100);
  if (t !== undefined) p.temperature = t;
  const topP = num('top_p', req.top_p, Number.MIN_VALUE, 1);
  if (topP !== undefined) p.top_p = topP;
  const topK = num('top_k', req.top_k, 0, info.nVocab);
  if (topK !== undefined) p.top_k = Math.floor(topK);
  const minP = num('min_p', req.min_p, 0, 1);
  if (minP !== undefined) p.min_p = minP;
  const fp = num('frequency_penalty', req.frequency_penalty, -2, 2);
  if (fp !== undefined) p.frequency_penalty = fp;
  const pp = num('presence_penalty', req.presence_penalty, -2, 2);
  if (pp !== undefined) p.presence_penalty = pp;
  const rp = num('repetition_penalty', req.repetition_penalty, Number.MIN_VALUE, 100);
  if (rp !== undefined) p.repeat_penalty = rp;
  if (req.seed !== undefined && req.seed !== null) {
    if (!Number.isSafeInteger(req.seed) || req.seed < 0) {
      throw new LlamaError(ErrorCode.INVALID_SAMPLING_PARAMS, `seed must be a non-negative integer, got ${req.seed}`);
    }
    p.seed = req.seed;
  } else {
    p.seed = Math.floor(Math.random() * 2 ** 52);
  }
  if (req.logit_bias) {
    p.logit_bias = Object.entries(req.logit_bias).map(([id, bias]) => {
      const n = Number(id);
      if (!Number.isInteger(n) || n < 0 || n >= info.nVocab || typeof bias !== 'number' || Number.isNaN(bias)) {
        throw new LlamaError(ErrorCode.INVALID_SAMPLING_PARAMS, `logit_bias entry ${id}: ${bias} is not a token id of this model with a numeric bias`);
      }
      return [n, bias];
    });
  }
  const constraint = constraintOf(req);
  if (constraint) p.constraint = constraint;
  if (req.logprobs) {
    p.logprobs = num('top_logprobs', req.top_logprobs ?? 0, 0, 20);
  } else if (req.top_logprobs) {
    throw new LlamaError(ErrorCode.INVALID_ARGUMENT, 'top_logprobs needs logprobs: true');
  }
  return p;
}

/**
 * OpenAI `response_format` (`json_object`, `json_schema`, WebLLM's `grammar`) or the `grammar`
 * extension field → the wasm engine's `constraint`, or null. The engine compiles it before
 * generating, so a bad schema or grammar rejects the request with INVALID_SCHEMA,
 * UNSUPPORTED_SCHEMA or INVALID_GRAMMAR before any token.
 */
function constraintOf(req) {
  const bad = (msg) => new LlamaError(ErrorCode.INVALID_ARGUMENT, msg);
  const rf = req.response_format;
  let c = null;
  if (rf !== undefined && rf !== null) {
    if (typeof rf !== 'object') throw bad('response_format must be an object such as {type: "json_object"}');
    switch (rf.type) {
      case 'text':
        break;
      case 'json_object':
        c = { type: 'json_object' };
        break;
      case 'json_schema': {
        const js = rf.json_schema;
        if (!js || typeof js !== 'object' || js.schema === undefined) {
          throw bad('response_format.json_schema needs {name, schema}');
        }
        c = { type: 'json_schema', schema: js.schema };
        break;
      }
      case 'grammar':
        if (typeof rf.grammar !== 'string') throw bad('response_format {type: "grammar"} needs a grammar string');
        c = { type: 'lark', grammar: rf.grammar };
        break;
      case 'regex':
        if (typeof rf.pattern !== 'string') throw bad('response_format {type: "regex"} needs a pattern string');
        c = { type: 'regex', pattern: rf.pattern };
        break;
      default:
        throw bad(`response_format.type must be text, json_object, json_schema, grammar or regex, got ${JSON.stringify(rf.type)}`);
    }
  }
  if (req.grammar !== undefined && req.grammar !== null) {
    if (typeof req.grammar !== 'string') throw bad('grammar must be a string (Lark or GBNF)');
    if (c) throw bad('give either response_format or grammar, not both');
    c = { type: 'lark', grammar: req.grammar };
  }
  return c;
}

/** Validates OpenAI `tools` and returns the function definitions by name. */
function toolFunctions(tools) {
  if (!Array.isArray(tools) || tools.length === 0) {
    throw new LlamaError(ErrorCode.INVALID_ARGUMENT, 'tools must be a non-empty array of {type: "function", function: {name, parameters}}');
  }
  const byName = new Map();
  tools.forEach((t, i) => {
    const f = t?.function;
    if (t?.type !== 'function' || !f || typeof f.name !== 'string' || !f.name) {
      throw new LlamaError(ErrorCode.INVALID_ARGUMENT, `tools[${i}] must be {type: "function", function: {name, description?, parameters?}}`);
    }
    if (f.parameters !== undefined && (typeof f.parameters !== 'object' || f.parameters === null || Array.isArray(f.parameters))) {
      throw new LlamaError(ErrorCode.INVALID_SCHEMA, `tools[${i}].function.parameters must be a JSON Schema object`);
    }
    if (byName.has(f.name)) throw new LlamaError(ErrorCode.INVALID_ARGUMENT, `two tools are named ${f.name}`);
    byName.set(f.name, f);
  });
  return byName;
}

/**
 * The JSON a call of `f` must be, in Llama 3.1's tool-call format
 * `{"name": ..., "parameters": {...}}`, with the function's own schema for the arguments.
 */
function callSchema(f) {
  return {
    type: 'object',
    properties: { name: { const: f.name }, parameters: f.parameters ?? { type: 'object' } },
    required: ['name', 'parameters'],
    additionalProperties: false,
  };
}

/**
 * The constraint for `tool_choice`: `required` → a call of any tool, a named function → a call
 * of that one, `auto` → either a call of any tool or plain text that does not start with `{`.
 */
function toolConstraint(byName, choice) {
  const calls = [...byName.values()].map(callSchema);
  const anyCall = calls.length === 1 ? calls[0] : { anyOf: calls };
  if (choice === 'required') return { type: 'json_schema', schema: anyCall };
  if (typeof choice === 'object' && choice?.type === 'function') {
    const f = byName.get(choice.function?.name);
    if (!f) throw new LlamaError(ErrorCode.INVALID_ARGUMENT, `tool_choice names ${JSON.stringify(choice.function?.name)}, which is not in tools`);
    return { type: 'json_schema', schema: callSchema(f) };
  }
  if (choice === 'auto') {
    return { type: 'lark', grammar: `start: call | TEXT\ncall: %json ${JSON.stringify(anyCall)}\nTEXT: /[^{\\s][\\s\\S]*/\n` };
  }
  throw new LlamaError(ErrorCode.INVALID_ARGUMENT, 'tool_choice must be "auto", "none", "required" or {type: "function", function: {name}}');
}

/**
 * Follows the text of a reply that may be a tool call: `push(text)` as tokens arrive returns the
 * events to stream (`{content}` or `{call: {name}}` then `{args}`), `end()` the rest. A call is
 * recognized when the reply starts with `{"name": "<tool>", "parameters": ` (or "arguments"); the
 * arguments are streamed as they come, holding back trailing `}` that may close the call.
 */
class ToolCallParser {
  constructor(names) {
    this.names = names;
    this.buf = '';
    this.mode = null; // null (undecided) | 'text' | 'call'
    this.name = null;
    this.args = '';
    this.sentArgs = 0;
  }

  push(text) {
    this.buf += text;
    const out = [];
    if (this.mode === null) {
      const t = this.buf.trimStart();
      if (!t) return out;
      if (t[0] !== '{') {
        this.mode = 'text';
        out.push({ content: this.buf });
        this.buf = '';
        return out;
      }
      const m = /^\s*\{\s*"name"\s*:\s*"((?:[^"\\]|\\.)*)"\s*,\s*"(?:parameters|arguments)"\s*:\s*/.exec(this.buf);
      if (!m) return out;
      let name;
      try { name = JSON.parse(`"${m[1]}"`); } catch { name = m[1]; }
      if (!this.names.has(name)) {
        this.mode = 'text';
        out.push({ content: this.buf });
        this.buf = '';
        return out;
      }
      this.mode = 'call';
      this.name = name;
      out.push({ call: { name } });
      this.buf = this.buf.slice(m[0].length);
    }
    if (this.mode === 'text') {
      if (this.buf) out.push({ content: this.buf });
      this.buf = '';
      return out;
    }
    // Call mode: `buf` holds the arguments so far plus the call's closing brace at the end.
    // Whitespace after the colon may arrive after the name matched: it is not part of them.
    if (this.sentArgs === 0) this.buf = this.buf.replace(/^\s+/, '');
    const held = /[\s}]*$/.exec(this.buf)[0].length;
    const ready = this.buf.slice(this.sentArgs, this.buf.length - held);
    if (ready) {
      out.push({ args: ready });
      this.sentArgs += ready.length;
    }
    return out;
  }

  /**
   * Call once generation is over. `complete`: it ended normally, so a call's text ends with the
   * call's own closing brace, which is not part of the arguments; a call cut short (by
   * max_tokens) keeps all its text as the (incomplete) arguments, as OpenAI does.
   */
  end(complete = true) {
    const out = [];
    if (this.mode === null) {
      if (this.buf) out.push({ content: this.buf });
    } else if (this.mode === 'call') {
      const close = complete ? this.buf.lastIndexOf('}') : -1;
      const argsEnd = close >= 0 && /^\s*$/.test(this.buf.slice(close + 1)) ? close : this.buf.length;
      this.args = this.buf.slice(0, argsEnd).replace(/\s+$/, '');
      const rest = this.args.slice(this.sentArgs);
      if (rest) out.push({ args: rest });
      this.sentArgs = this.args.length;
    }
    this.buf = '';
    return out;
  }
}

/** OpenAI chat messages → what the chat template renders (tool-call arguments as objects). */
function templateMessage(m, i) {
  const out = { role: m.role, content: m.content };
  if (m.tool_calls !== undefined && m.tool_calls !== null) {
    if (!Array.isArray(m.tool_calls)) throw new LlamaError(ErrorCode.INVALID_PROMPT, `messages[${i}].tool_calls must be an array`);
    out.tool_calls = m.tool_calls.map((c, j) => {
      const f = c?.function;
      if (!f || typeof f.name !== 'string') throw new LlamaError(ErrorCode.INVALID_PROMPT, `messages[${i}].tool_calls[${j}] needs function.name`);
      let args = f.arguments ?? {};
      if (typeof args === 'string') {
        try {
          args = JSON.parse(args || '{}');
        } catch (e) {
          throw new LlamaError(ErrorCode.INVALID_PROMPT, `messages[${i}].tool_calls[${j}].function.arguments is not JSON: ${e.message}`);
        }
      }
      return { id: c.id, type: 'function', function: { name: f.name, arguments: args } };
    });
  }
  if (m.tool_call_id !== undefined) out.tool_call_id = String(m.tool_call_id);
  if (typeof m.name === 'string') out.name = m.name;
  return out;
}

/**
 * A loaded model on the GPU, with the OpenAI-style API. Construct with {@link EngineCore.load}.
 * Requests run one at a time, in the order they were made.
 */
export class EngineCore {
  constructor(gpu, engine, info, source, options) {
    this._gpu = gpu;
    this._engine = engine;
    this._source = source;
    this._options = options;
    this._queue = Promise.resolve();
    /** The running request's control: `stop` ends it early. */
    this._current = null;
    /** Model and adapter facts: `{model: {...}, adapter: {...}, features, limits, load: {...}}`. */
    this.info = info;
    this.chat = { completions: { create: (req) => this._chatCreate(req) } };
    this.completions = { create: (req) => this._completionCreate(req) };
  }

  /**
   * Loads a GGUF model (URL, URL list, File or File list; split shards are discovered).
   * @param {string|string[]|Blob|Blob[]} source
   * @param {object} [options] `{onProgress, onWarning, signal, contextSize, cache = true,
   *   precision = 'auto'|'f16'|'f32', wasmUrl, sha256, retries, maxStorageBinding}`
   */
  static async load(source, options = {}) {
    const { onProgress, signal, contextSize, cache = true, precision = 'auto' } = options;
    const started = performance.now();
    throwIfAborted(signal);
    const wasm = await initWasm(options.wasmUrl);
    if (!globalThis.navigator?.gpu) {
      throw new LlamaError(ErrorCode.NO_WEBGPU, 'WebGPU is not available in this browser (navigator.gpu is missing); use a recent Chrome or Edge, or enable WebGPU');
    }
    if (!['auto', 'f16', 'f32'].includes(precision)) {
      throw new LlamaError(ErrorCode.INVALID_ARGUMENT, `precision must be 'auto', 'f16' or 'f32', got ${precision}`);
    }
    let gpu;
    try {
      gpu = await createGpu({ allowF16: precision !== 'f32', maxStorageBinding: options.maxStorageBinding });
    } catch (e) {
      throw toLlamaError(e, ErrorCode.NO_WEBGPU);
    }
    const gpuInfo = gpu.info();
    // wgpu cannot see the browser's adapter description; ask WebGPU directly.
    try {
      const a = (await navigator.gpu.requestAdapter())?.info;
      if (a) Object.assign(gpuInfo.adapter, { vendor: a.vendor, architecture: a.architecture, name: a.description || a.device || gpuInfo.adapter.name });
    } catch {
      // Informational only.
    }
    if (precision === 'f16' && !gpuInfo.features.shaderF16) {
      gpu.free();
      throw new LlamaError(ErrorCode.NO_WEBGPU, "precision 'f16' was requested but this adapter has no shader-f16");
    }
    // The memory plan is made at the first header: it fixes the context (this one, or by
    // default the model's, at most 4096 and at most what the device's limits allow), allocates
    // the KV cache and reserves the rest, so a model that does not fit fails before its
    // weights download.
    let loader;
    try {
      loader = new ModelLoader(gpu, contextSize);
    } catch (e) {
      gpu.free();
      throw toLlamaError(e, ErrorCode.INVALID_ARGUMENT);
    }
    const state = { phase: 'download', loadedBytes: 0, totalBytes: 0, bytesPerSecond: 0, cachedBytes: 0 };
    // Read from the loader only between its calls: finish() borrows it while it compiles.
    let counts = { tensorsLoaded: 0, tensorsTotal: 0 };
    let lastReport = 0;
    const report = () => {
      if (!onProgress) return;
      lastReport = performance.now();
      const p = counts;
      try {
        onProgress({
          phase: state.phase,
          loadedBytes: state.loadedBytes,
          totalBytes: state.totalBytes,
          tensorsLoaded: p.tensorsLoaded ?? 0,
          tensorsTotal: p.tensorsTotal ?? 0,
          bytesPerSecond: state.bytesPerSecond,
        });
      } catch (e) {
        console.error('llama-webgpu: onProgress threw', e);
      }
    };
    // The timer covers stalls (a slow network); pushes also report, because a busy thread
    // delays timers.
    const timer = setInterval(report, PROGRESS_MS);
    const maybeReport = () => {
      if (performance.now() - lastReport >= PROGRESS_MS) report();
    };
    const warnings = [];
    try {
      const shards = resolveSource(source);
      await probeShards(shards, { signal });
      state.totalBytes = shards.reduce((a, s) => a + (s.size ?? 0), 0);
      if (shards.every((s) => s.size != null)) loader.setExpectedBytes(state.totalBytes);
      report();
      const onEvent = (ev) => {
        if (ev.type === 'download') {
          state.bytesPerSecond = ev.bytesPerSecond;
        } else if (ev.type === 'warning') {
          warnings.push({ code: ev.code, message: ev.message });
          options.onWarning?.(ev);
        }
      };
      for await (const shard of openShards(shards, { signal, cache, onEvent, sha256: options.sha256, retries: options.retries })) {
        state.phase = shard.fromCache || !shards[shard.index].url ? 'upload' : 'download';
        if (shard.fromCache) state.cachedBytes += shard.size;
        loader.beginShard(shard.size);
        for await (const chunk of shard.chunks) {
          throwIfAborted(signal);
          for (let at = 0; at < chunk.length; at += PUSH_BYTES) {
            loader.push(chunk.subarray(at, Math.min(chunk.length, at + PUSH_BYTES)));
            state.loadedBytes += Math.min(PUSH_BYTES, chunk.length - at);
            const before = counts.headersParsed ?? 0;
            counts = loader.progress();
            if (counts.headersParsed > before) {
              // The header just allocated this shard's GPU buffers: if they did not fit, say
              // so now rather than after downloading the rest.
              await loader.checkMemory();
            }
            maybeReport();
          }
        }
        loader.endShard();
        counts = loader.progress();
      }
      throwIfAborted(signal);
      state.phase = 'compile';
      report();
      const engine = await loader.finish();
      loader = null;
      throwIfAborted(signal);
      const seconds = (performance.now() - started) / 1000;
      const info = {
        model: { ...engine.info(), source: shards.map((s) => s.url ?? s.name), sizeBytes: state.totalBytes },
        ...gpuInfo,
        load: {
          seconds,
          bytesPerSecond: state.totalBytes / seconds,
          fromCacheBytes: state.cachedBytes,
          // Wasm memory never shrinks, so its size now is the peak of this load.
          wasmMemoryBytes: wasm.memory.buffer.byteLength,
          warnings,
        },
      };
      state.loadedBytes = state.totalBytes;
      report();
      return new EngineCore(gpu, engine, info, source, options);
    } catch (e) {
      // Dropping the loader and the device releases every GPU buffer made so far.
      loader?.free();
      gpu.free();
      throw signal?.aborted ? abortError(signal) : toLlamaError(e, ErrorCode.BAD_GGUF);
    } finally {
      clearInterval(timer);
    }
  }

  /** Whether every shard of `source` is complete in the persistent cache. */
  static hasModelInCache(source) {
    return hasInCache(source);
  }

  /** Removes `source`'s shards from the persistent cache. */
  static deleteModelFromCache(source) {
    return deleteFromCache(source);
  }

  _live() {
    if (!this._engine) throw new LlamaError(ErrorCode.NOT_LOADED, 'the model was unloaded');
    return this._engine;
  }

  /** Runs `fn` after every earlier request has finished. */
  _enqueue(fn) {
    const run = this._queue.then(fn, fn);
    this._queue = run.catch(() => {});
    return run;
  }

  /** Token ids of `text` (with BOS when the model uses one, unless `addBos` is false). */
  tokenize(text, { addBos = true, parseSpecial = false } = {}) {
    if (typeof text !== 'string') throw new LlamaError(ErrorCode.INVALID_ARGUMENT, 'tokenize() takes a string');
    return Array.from(this._live().tokenize(text, parseSpecial, addBos));
  }

  /** Text of token ids. */
  detokenize(ids, { renderSpecial = false } = {}) {
    return this._live().detokenize(Uint32Array.from(ids), renderSpecial);
  }

  /** Ends the running generation early; its result has `finish_reason: 'abort'`. */
  interrupt() {
    if (this._current) this._current.stop = true;
  }

  /** Forgets the conversation held in the KV cache (after the running request). */
  resetChat() {
    return this._enqueue(() => this._live().reset());
  }

  /**
   * Loads the model again on a new GPU device (from the cache when it was cached), after the
   * device was lost (`DEVICE_LOST`) or to change `options` such as `contextSize`. Waits for
   * the running request; the conversation in the KV cache is forgotten.
   */
  reload(options = {}) {
    return this._enqueue(async () => {
      const fresh = await EngineCore.load(this._source, { ...this._options, ...options });
      this._engine?.free();
      this._gpu?.free();
      this._engine = fresh._engine;
      this._gpu = fresh._gpu;
      this._options = fresh._options;
      this.info = fresh.info;
      return this.info;
    });
  }

  /** Frees the model's GPU memory; the engine cannot be used afterwards. */
  unload() {
    this.interrupt();
    return this._enqueue(() => {
      this._engine?.free();
      this._gpu?.free();
      this._engine = null;
      this._gpu = null;
    });
  }

  /**
   * The core generation loop as an async iterable of steps `{id, text, logprob?, topLogprobs?}`;
   * the iterator's return value is the summary `{finishReason, promptTokens, completionTokens,
   * cachedTokens, timings}`. Runs inside the request queue.
   */
  async *_steps(ids, params, signal, ctl) {
    const engine = this._live();
    throwIfAborted(signal);
    const t0 = performance.now();
    let begun;
    try {
      begun = engine.begin(Uint32Array.from(ids), JSON.stringify(params));
    } catch (e) {
      throw toLlamaError(e);
    }
    let first = 0;
    let completion = 0;
    let finish = null;
    let mask = null;
    while (!finish) {
      if (ctl.stop || signal?.aborted) {
        const rest = engine.abort();
        if (rest) yield { id: null, text: rest };
        if (signal?.aborted) throw abortError(signal);
        finish = 'abort';
        break;
      }
      let r;
      try {
        r = await engine.step();
      } catch (e) {
        throw toLlamaError(e);
      }
      if (!first) first = performance.now();
      if (r.token !== null) completion += 1 + (r.forced ?? 0);
      finish = r.finish;
      if (r.masks !== undefined) mask = { ms: r.maskMs, count: r.masks, compileMs: r.compileMs };
      if (r.token !== null || r.text) {
        const out = { id: r.token, text: r.text };
        if (r.logprob !== undefined) {
          out.logprob = r.logprob;
          out.topLogprobs = r.topLogprobs;
        }
        yield out;
      }
    }
    const end = performance.now();
    const ttft = (first || end) - t0;
    return {
      finishReason: finish === 'abort' ? 'abort' : finish,
      promptTokens: ids.length,
      completionTokens: completion,
      cachedTokens: begun.cachedTokens,
      prefillTokens: begun.prefillTokens,
      timings: {
        time_to_first_token_ms: ttft,
        prefill_tokens_per_s: begun.prefillTokens / Math.max(ttft / 1000, 1e-9),
        decode_tokens_per_s: completion > 1 ? (completion - 1) / Math.max((end - first) / 1000, 1e-9) : 0,
        ...(mask && {
          mask_ms_per_token: mask.ms / Math.max(mask.count, 1),
          grammar_compile_ms: mask.compileMs,
        }),
      },
    };
  }

  /**
   * Streams the request through the queue: `onStep` gets each step, the promise resolves with
   * the summary. Streaming APIs wrap this in an async iterable.
   */
  _run(ids, params, signal, onStep, ctl = { stop: false }) {
    return this._enqueue(async () => {
      this._current = ctl;
      try {
        const it = this._steps(ids, params, signal, ctl);
        for (;;) {
          const { value, done } = await it.next();
          if (done) return value;
          await onStep(value);
        }
      } finally {
        this._current = null;
      }
    });
  }

  /** Turns a push-style run into an async iterable of items that `map` makes from steps. */
  _stream(start, signal) {
    const queue = [];
    let wake = null;
    let ended = false;
    let failure = null;
    const ctl = { stop: false };
    const push = (item) => {
      queue.push(item);
      wake?.();
    };
    start(push, ctl).then(
      () => { ended = true; wake?.(); },
      (e) => { failure = e; ended = true; wake?.(); },
    );
    return {
      [Symbol.asyncIterator]() {
        return this;
      },
      async next() {
        for (;;) {
          // An aborted request ends at once, even with chunks still queued.
          if (signal?.aborted) {
            ctl.stop = true;
            throw abortError(signal);
          }
          if (queue.length) return { value: queue.shift(), done: false };
          if (failure) throw failure;
          if (ended) return { value: undefined, done: true };
          await new Promise((r) => { wake = r; });
          wake = null;
        }
      },
      async return() {
        // The consumer left the loop early (break): stop generating.
        ctl.stop = true;
        return { value: undefined, done: true };
      },
    };
  }

  /** Prompt ids for `generate()`: a string is tokenized with BOS; ids pass through. */
  _promptIds(prompt) {
    if (typeof prompt === 'string') return this.tokenize(prompt);
    if (Array.isArray(prompt) || prompt instanceof Uint32Array) return Array.from(prompt);
    throw new LlamaError(ErrorCode.INVALID_PROMPT, 'the prompt must be a string or an array of token ids');
  }

  /**
   * Low-level generation: an async iterable of `{id, text}` per token. `options` takes the
   * sampling fields of `completions.create` plus `signal`.
   */
  generate(prompt, options = {}) {
    return this._stream(async (push, ctl) => {
      const ids = this._promptIds(prompt);
      this._checkFits(ids);
      const params = samplingParams(options, this.info.model, ids.length);
      await this._run(ids, params, options.signal, (s) => push({ id: s.id, text: s.text }), ctl);
    }, options.signal);
  }

  _validateMessages(messages) {
    if (!Array.isArray(messages) || messages.length === 0) {
      throw new LlamaError(ErrorCode.INVALID_PROMPT, 'messages must be a non-empty array');
    }
    return messages.map((m, i) => {
      if (!m || typeof m.role !== 'string') {
        throw new LlamaError(ErrorCode.INVALID_PROMPT, `messages[${i}] needs a string role`);
      }
      let content = m.content;
      if (Array.isArray(content)) {
        // OpenAI content parts: only text parts are meaningful to a text model.
        content = content.map((p) => {
          if (p?.type !== 'text') throw new LlamaError(ErrorCode.INVALID_PROMPT, `messages[${i}]: only text content parts are supported`);
          return p.text;
        }).join('');
      }
      if ((content === null || content === undefined) && m.role === 'assistant' && m.tool_calls) content = '';
      if (typeof content !== 'string') {
        throw new LlamaError(ErrorCode.INVALID_PROMPT, `messages[${i}].content must be a string`);
      }
      return templateMessage({ ...m, content }, i);
    });
  }

  _logprobsEntry(step) {
    if (step.logprob === undefined) return null;
    const bytes = (t) => Array.from(new TextEncoder().encode(t));
    const text = step.id === null ? '' : this._engine.detokenize(Uint32Array.of(step.id), false);
    return {
      token: text,
      logprob: step.logprob,
      bytes: bytes(text),
      top_logprobs: step.topLogprobs.map((t) => ({ token: t.text, logprob: t.logprob, bytes: bytes(t.text) })),
    };
  }

  _usage(summary) {
    return {
      prompt_tokens: summary.promptTokens,
      completion_tokens: summary.completionTokens,
      total_tokens: summary.promptTokens + summary.completionTokens,
      prompt_tokens_details: { cached_tokens: summary.cachedTokens },
      extra: summary.timings,
    };
  }

  /**
   * Shared by chat and plain completions: `kind` picks the OpenAI object shapes. `tools` (chat
   * only) is `{names, constraint}` when the reply may be a tool call.
   */
  _create(req, kind, ids, tools = null) {
    const params = samplingParams(req, this.info.model, ids.length);
    if (tools) {
      if (params.constraint) {
        throw new LlamaError(ErrorCode.INVALID_ARGUMENT, 'response_format and grammar cannot be combined with tools (tool calls have their own schema)');
      }
      params.constraint = tools.constraint;
    }
    const callId = () => newId('call');
    const finishOf = (summary, parser) => (parser?.mode === 'call' && summary.finishReason === 'stop' ? 'tool_calls' : summary.finishReason);
    const id = newId(kind === 'chat' ? 'chatcmpl' : 'cmpl');
    const created = Math.floor(Date.now() / 1000);
    const model = req.model ?? this.info.model.source[0];
    const chunkOf = (choice, extra = {}) => ({
      id,
      object: kind === 'chat' ? 'chat.completion.chunk' : 'text_completion',
      created,
      model,
      choices: [{ index: 0, logprobs: null, finish_reason: null, ...choice }],
      ...extra,
    });
    if (req.stream) {
      return this._stream(async (push, ctl) => {
        if (kind === 'chat') push(chunkOf({ delta: { role: 'assistant', content: '' } }));
        const parser = tools && new ToolCallParser(tools.names);
        const id = parser && callId();
        // Tool-call events → OpenAI deltas: the call's id and name first, then argument pieces.
        const deltas = (events) => events.map((e) => e.content !== undefined
          ? { content: e.content }
          : { tool_calls: [e.call
            ? { index: 0, id, type: 'function', function: { name: e.call.name, arguments: '' } }
            : { index: 0, function: { arguments: e.args } }] });
        const summary = await this._run(ids, params, req.signal, (s) => {
          if (!s.text && s.logprob === undefined) return;
          const lp = this._logprobsEntry(s);
          const logprobs = lp ? { content: [lp] } : null;
          if (kind !== 'chat') return push(chunkOf({ text: s.text, logprobs }));
          if (!parser) return push(chunkOf({ delta: { content: s.text }, logprobs }));
          const ds = deltas(parser.push(s.text));
          if (!ds.length && logprobs) ds.push({});
          ds.forEach((delta, i) => push(chunkOf({ delta, logprobs: i === 0 ? logprobs : null })));
        }, ctl);
        if (parser) deltas(parser.end(summary.finishReason === 'stop')).forEach((delta) => push(chunkOf({ delta })));
        push(kind === 'chat'
          ? chunkOf({ delta: {}, finish_reason: finishOf(summary, parser) })
          : chunkOf({ text: '', finish_reason: summary.finishReason }));
        if (req.stream_options?.include_usage) {
          push({ ...chunkOf({}), choices: [], usage: this._usage(summary) });
        }
      }, req.signal);
    }
    let text = '';
    const lps = [];
    return this._run(ids, params, req.signal, (s) => {
      text += s.text;
      const lp = this._logprobsEntry(s);
      if (lp) lps.push(lp);
    }).then((summary) => {
      const logprobs = req.logprobs ? { content: lps } : null;
      let message = { role: 'assistant', content: text };
      let parser = null;
      if (tools) {
        parser = new ToolCallParser(tools.names);
        parser.push(text);
        parser.end(summary.finishReason === 'stop');
        if (parser.mode === 'call') {
          message = {
            role: 'assistant',
            content: null,
            tool_calls: [{ id: callId(), type: 'function', function: { name: parser.name, arguments: parser.args } }],
          };
        }
      }
      const choice = kind === 'chat'
        ? { index: 0, message, logprobs, finish_reason: finishOf(summary, parser) }
        : { index: 0, text, logprobs, finish_reason: summary.finishReason };
      return {
        id,
        object: kind === 'chat' ? 'chat.completion' : 'text_completion',
        created,
        model,
        choices: [choice],
        usage: this._usage(summary),
      };
    });
  }

  async _chatCreate(req) {
    const messages = this._validateMessages(req?.messages);
    let tools = null;
    const choice = req.tool_choice ?? (req.tools ? 'auto' : 'none');
    if (req.tools !== undefined && req.tools !== null && choice !== 'none') {
      const byName = toolFunctions(req.tools);
      tools = { names: new Set(byName.keys()), constraint: toolConstraint(byName, choice), defs: req.tools };
    } else if (choice !== 'none') {
      throw new LlamaError(ErrorCode.INVALID_ARGUMENT, `tool_choice ${JSON.stringify(choice)} needs tools`);
    }
    const engine = this._live();
    let text;
    try {
      text = engine.applyChatTemplate(JSON.stringify(messages), true, tools ? JSON.stringify(tools.defs) : undefined);
    } catch (e) {
      throw toLlamaError(e);
    }
    const ids = Array.from(engine.tokenize(text, true, true));
    this._checkFits(ids);
    return this._create(req, 'chat', ids, tools);
  }

  async _completionCreate(req) {
    if (typeof req?.prompt !== 'string' && !Array.isArray(req?.prompt) && !(req?.prompt instanceof Uint32Array)) {
      throw new LlamaError(ErrorCode.INVALID_PROMPT, 'prompt must be a string or an array of token ids');
    }
    const ids = this._promptIds(req.prompt);
    this._checkFits(ids);
    return this._create(req, 'text', ids);
  }

  _checkFits(ids) {
    const ctx = this.info.model.contextSize;
    if (ids.length >= ctx) {
      throw new LlamaError(ErrorCode.PROMPT_TOO_LONG, `the prompt has ${ids.length} tokens but the context holds ${ctx} (set contextSize when loading)`);
    }
  }
}
