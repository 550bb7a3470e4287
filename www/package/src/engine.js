// @ts-check
// The engine in the current thread: a loaded model (./load.js) and its lifecycle, the queue its
// requests wait in, and the generation loop over the wasm engine's steps; OpenAI requests
// (./openai-request.js, ./tools.js) go in, OpenAI responses (./openai-response.js) come out.
// `index.js` runs this same class in a Web Worker by default.

import { asyncQueue } from './async-queue.js';
import { benchmarkOptions, benchmarkReport } from './benchmark.js';
import { ErrorCode, LlamaError, abortError, toLlamaError } from './errors.js';
import { deleteFromCache, hasInCache } from './fetch.js';
import { loadModel } from './load.js';
import { samplingParams, templateMessages } from './openai-request.js';
import { ResponseEnvelope, logprobsEntry, newId } from './openai-response.js';
import { ToolCallParser, toolCallDeltas, toolSetup } from './tools.js';

/** @typedef {import('./sources.js').ModelSource} ModelSource */
/** @typedef {import('./load-info.js').LoadOptions} LoadOptions */
/** @typedef {import('./load-info.js').EngineInfo} EngineInfo */
/** @typedef {import('./openai-response.js').GenerationStep} GenerationStep */
/** @typedef {import('./openai-response.js').GenerationSummary} GenerationSummary */
/** @typedef {import('./openai-response.js').GeneratedToken} GeneratedToken */
/** @typedef {import('./tools.js').ToolSetup} ToolSetup */
/** @typedef {import('./benchmark.js').BenchmarkOptions} BenchmarkOptions */
/** @typedef {import('./benchmark.js').BenchmarkResult} BenchmarkResult */
/** @typedef {{stop: boolean}} RunControl the running request's control: `stop` ends it early */

/**
 * A loaded model on the GPU, with the OpenAI-style API. Construct with {@link EngineCore.load}.
 * Requests run one at a time, in the order they were made.
 */
export class EngineCore {
  /**
   * @param {import('../wasm/llama_webgpu.js').Gpu} gpu
   * @param {import('../wasm/llama_webgpu.js').Engine} engine
   * @param {EngineInfo} info
   * @param {ModelSource} source
   * @param {LoadOptions} options
   */
  constructor(gpu, engine, info, source, options) {
    /** @type {import('../wasm/llama_webgpu.js').Gpu | null} */
    this._gpu = gpu;
    /** @type {import('../wasm/llama_webgpu.js').Engine | null} */
    this._engine = engine;
    this._source = source;
    this._options = options;
    /** @type {Promise<unknown>} */
    this._queue = Promise.resolve();
    /** @type {RunControl | null} */
    this._current = null;
    /** Model and adapter facts: `{model: {...}, adapter: {...}, features, limits, load: {...}}`. */
    this.info = info;
    this.chat = { completions: { create: (/** @type {any} */ req) => this._chatCreate(req) } };
    this.completions = { create: (/** @type {any} */ req) => this._completionCreate(req) };
  }

  /**
   * Loads a GGUF model (URL, URL list, File or File list; split shards are discovered).
   * @param {ModelSource} source
   * @param {LoadOptions} [options]
   * @returns {Promise<EngineCore>}
   */
  static async load(source, options = {}) {
    const { gpu, engine, info } = await loadModel(source, options);
    return new EngineCore(gpu, engine, info, source, options);
  }

  /**
   * Whether every shard of `source` is complete in the persistent cache.
   * @param {ModelSource} source
   */
  static hasModelInCache(source) {
    return hasInCache(source);
  }

  /**
   * Removes `source`'s shards from the persistent cache.
   * @param {ModelSource} source
   */
  static deleteModelFromCache(source) {
    return deleteFromCache(source);
  }

  _live() {
    if (!this._engine) throw new LlamaError(ErrorCode.NOT_LOADED, 'the model was unloaded');
    return this._engine;
  }

  /**
   * Runs `fn` after every earlier request has finished.
   * @template T
   * @param {() => T | Promise<T>} fn
   * @returns {Promise<T>}
   */
  _enqueue(fn) {
    const run = this._queue.then(fn, fn);
    this._queue = run.catch(() => {});
    return run;
  }

  /**
   * Token ids of `text` (with BOS when the model uses one, unless `addBos` is false).
   * @param {string} text
   * @param {{addBos?: boolean, parseSpecial?: boolean}} [options]
   * @returns {number[]}
   */
  tokenize(text, { addBos = true, parseSpecial = false } = {}) {
    if (typeof text !== 'string') throw new LlamaError(ErrorCode.INVALID_ARGUMENT, 'tokenize() takes a string');
    return Array.from(this._live().tokenize(text, parseSpecial, addBos));
  }

  /**
   * Text of token ids.
   * @param {ArrayLike<number>} ids
   * @param {{renderSpecial?: boolean}} [options]
   * @returns {string}
   */
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
   * Measures this device on the loaded model (after the running request): a fixed prompt
   * prefilled, greedy decode steps timed, and each kernel timed where the device has
   * `timestamp-query`. The conversation in the KV cache is forgotten.
   * @param {BenchmarkOptions} [options]
   * @returns {Promise<BenchmarkResult>}
   */
  async benchmark(options = {}) {
    const opts = benchmarkOptions(options);
    return this._enqueue(async () => {
      const engine = this._live();
      let raw;
      try {
        raw = await engine.benchmark(opts.promptTokens, opts.decodeTokens, opts.profileSteps);
      } catch (e) {
        throw toLlamaError(e);
      }
      return benchmarkReport(raw, this.info, opts);
    });
  }

  /**
   * Loads the model again on a new GPU device (from the cache when it was cached), after the
   * device was lost (`DEVICE_LOST`) or to change `options` such as `contextSize`. Waits for
   * the running request; the conversation in the KV cache is forgotten.
   * @param {LoadOptions} [options]
   * @returns {Promise<EngineInfo>}
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
   * The core generation loop as an async iterable of steps; the iterator's return value is the
   * summary. Runs inside the request queue.
   * @param {number[]} ids
   * @param {object} params
   * @param {AbortSignal | undefined} signal
   * @param {RunControl} ctl
   * @returns {AsyncGenerator<GenerationStep, GenerationSummary>}
   */
  async *_steps(ids, params, signal, ctl) {
    const engine = this._live();
    if (signal?.aborted) throw abortError(signal);
    const t0 = performance.now();
    let begun;
    try {
      begun = engine.begin(Uint32Array.from(ids), JSON.stringify(params));
    } catch (e) {
      throw toLlamaError(e);
    }
    let first = 0;
    let completion = 0;
    /** @type {GenerationSummary['finishReason'] | null} */
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
        /** @type {GenerationStep} */
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
      finishReason: finish,
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
   * @param {number[]} ids
   * @param {object} params
   * @param {AbortSignal | undefined} signal
   * @param {(step: GenerationStep) => unknown} onStep
   * @param {RunControl} [ctl]
   * @returns {Promise<GenerationSummary>}
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

  /**
   * Turns a push-style run into an async iterable of the items `start` pushes; leaving the loop
   * or aborting `signal` stops the generation.
   * @template T
   * @param {(push: (item: T) => void, ctl: RunControl) => Promise<void>} start
   * @param {AbortSignal | undefined} signal
   * @returns {AsyncIterable<T>}
   */
  _stream(start, signal) {
    const ctl = { stop: false };
    const stop = () => {
      ctl.stop = true;
    };
    /** @type {import('./async-queue.js').AsyncQueue<T>} */
    const q = asyncQueue(signal, { onAbort: stop, onReturn: stop });
    start(q.push, ctl).then(q.end, q.fail);
    return q.iterable;
  }

  /**
   * Prompt ids for `generate()`: a string is tokenized with BOS; ids pass through.
   * @param {unknown} prompt
   * @returns {number[]}
   */
  _promptIds(prompt) {
    if (typeof prompt === 'string') return this.tokenize(prompt);
    if (Array.isArray(prompt) || prompt instanceof Uint32Array) return Array.from(prompt);
    throw new LlamaError(ErrorCode.INVALID_PROMPT, 'the prompt must be a string or an array of token ids');
  }

  /**
   * Low-level generation: an async iterable of `{id, text}` per token. `options` takes the
   * sampling fields of `completions.create` plus `signal`.
   * @param {string | readonly number[] | Uint32Array} prompt
   * @param {import('./openai-request.js').GenerateOptions} [options]
   * @returns {AsyncIterable<GeneratedToken>}
   */
  generate(prompt, options = {}) {
    return this._stream(async (push, ctl) => {
      const ids = this._promptIds(prompt);
      this._checkFits(ids);
      const params = samplingParams(options, this.info.model, ids.length);
      await this._run(ids, params, options.signal, (s) => push({ id: s.id, text: s.text }), ctl);
    }, options.signal);
  }

  /** @param {number} id */
  _tokenText(id) {
    return /** @type {import('../wasm/llama_webgpu.js').Engine} */ (this._engine).detokenize(Uint32Array.of(id), false);
  }

  /**
   * Shared by chat and plain completions: `kind` picks the OpenAI object shapes. `tools` (chat
   * only) is set when the reply may be a tool call.
   * @param {any} req
   * @param {'chat' | 'text'} kind
   * @param {number[]} ids
   * @param {ToolSetup | null} [tools]
   * @returns {Promise<object> | AsyncIterable<object>}
   */
  _create(req, kind, ids, tools = null) {
    const params = samplingParams(req, this.info.model, ids.length);
    if (tools) {
      if (params.constraint) {
        throw new LlamaError(ErrorCode.INVALID_ARGUMENT, 'response_format and grammar cannot be combined with tools (tool calls have their own schema)');
      }
      params.constraint = tools.constraint;
    }
    const reply = new ResponseEnvelope(kind, req.model ?? this.info.model.source[0]);
    /** @param {GenerationStep} s */
    const logprobsOf = (s) => logprobsEntry(s, (id) => this._tokenText(id));
    if (req.stream) {
      return this._stream(async (push, ctl) => {
        if (kind === 'chat') push(reply.chunk({ delta: { role: 'assistant', content: '' } }));
        const parser = tools && new ToolCallParser(tools.names);
        const callId = parser ? newId('call') : '';
        const summary = await this._run(ids, params, req.signal, (s) => {
          if (!s.text && s.logprob === undefined) return;
          const lp = logprobsOf(s);
          const logprobs = lp ? { content: [lp] } : null;
          if (kind !== 'chat') return push(reply.chunk({ text: s.text, logprobs }));
          if (!parser) return push(reply.chunk({ delta: { content: s.text }, logprobs }));
          /** @type {object[]} */
          const ds = toolCallDeltas(parser.push(s.text), callId);
          if (!ds.length && logprobs) ds.push({});
          ds.forEach((delta, i) => push(reply.chunk({ delta, logprobs: i === 0 ? logprobs : null })));
        }, ctl);
        if (parser) toolCallDeltas(parser.end(summary.finishReason === 'stop'), callId).forEach((delta) => push(reply.chunk({ delta })));
        push(kind === 'chat'
          ? reply.chunk({ delta: {}, finish_reason: parser ? parser.finishReason(summary.finishReason) : summary.finishReason })
          : reply.chunk({ text: '', finish_reason: summary.finishReason }));
        if (req.stream_options?.include_usage) push(reply.usageChunk(summary));
      }, req.signal);
    }
    let text = '';
    /** @type {import('./openai-response.js').TokenLogprob[]} */
    const lps = [];
    return this._run(ids, params, req.signal, (s) => {
      text += s.text;
      const lp = logprobsOf(s);
      if (lp) lps.push(lp);
    }).then((summary) => {
      const logprobs = req.logprobs ? { content: lps } : null;
      if (kind !== 'chat') return reply.response({ index: 0, text, logprobs, finish_reason: summary.finishReason }, summary);
      /** @type {import('./openai-response.js').ChatCompletionMessage} */
      let message = { role: 'assistant', content: text };
      /** @type {import('./openai-response.js').FinishReason} */
      let finish = summary.finishReason;
      if (tools) {
        const parser = new ToolCallParser(tools.names);
        parser.push(text);
        parser.end(summary.finishReason === 'stop');
        if (parser.mode === 'call') message = { role: 'assistant', content: null, tool_calls: parser.toolCalls(newId('call')) };
        finish = parser.finishReason(finish);
      }
      return reply.response({ index: 0, message, logprobs, finish_reason: finish }, summary);
    });
  }

  /** @param {any} req */
  async _chatCreate(req) {
    const messages = templateMessages(req?.messages);
    const tools = toolSetup(req);
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

  /** @param {any} req */
  async _completionCreate(req) {
    if (typeof req?.prompt !== 'string' && !Array.isArray(req?.prompt) && !(req?.prompt instanceof Uint32Array)) {
      throw new LlamaError(ErrorCode.INVALID_PROMPT, 'prompt must be a string or an array of token ids');
    }
    const ids = this._promptIds(req.prompt);
    this._checkFits(ids);
    return this._create(req, 'text', ids);
  }

  /** @param {number[]} ids */
  _checkFits(ids) {
    const ctx = this.info.model.contextSize;
    if (ids.length >= ctx) {
      throw new LlamaError(ErrorCode.PROMPT_TOO_LONG, `the prompt has ${ids.length} tokens but the context holds ${ctx} (set contextSize when loading)`);
    }
  }
}
