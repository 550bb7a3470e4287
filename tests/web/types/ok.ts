// A consumer of the whole public API, as a web app would write it. It must type-check cleanly
// (strict) against www/package/src/index.d.ts, resolved through package.json's "types"
// condition. It is never run: tests/web/types.test.mjs only type-checks it.

import LlamaEngineDefault, {
  ErrorCode,
  LlamaEngine,
  LlamaError,
  type BenchmarkResult,
  type ChatCompletion,
  type ChatCompletionChunk,
  type ChatCompletionMessageParam,
  type Completion,
  type KernelTime,
  type CompletionChunk,
  type EngineInfo,
  type FinishReason,
  type GeneratedToken,
  type LoadOptions,
  type LoadProgress,
  type LoadWarning,
  type MemoryPlan,
  type ModelShape,
  type PlanOptions,
} from 'llama-webgpu';

// Compile-time equality checks.
type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends (<T>() => T extends B ? 1 : 2) ? true : false;
function assertType<T extends true>(): T | void {}

assertType<Equal<typeof LlamaEngineDefault, typeof LlamaEngine>>();
assertType<Equal<ErrorCode, 'NO_WEBGPU' | 'BAD_GGUF' | 'BAD_SPLIT' | 'UNSUPPORTED_TENSOR_TYPE' | 'UNSUPPORTED_ARCHITECTURE'
  | 'BAD_MODEL' | 'OUT_OF_MEMORY' | 'DEVICE_LOST' | 'GPU_ERROR' | 'NETWORK_ERROR' | 'INTEGRITY_ERROR' | 'ABORTED'
  | 'CONTEXT_FULL' | 'PROMPT_TOO_LONG' | 'INVALID_PROMPT' | 'BAD_TOKEN' | 'TOKENIZER_ERROR' | 'TEMPLATE_ERROR'
  | 'INVALID_SAMPLING_PARAMS' | 'INVALID_ARGUMENT' | 'NOT_LOADED' | 'IO_ERROR'
  | 'INVALID_SCHEMA' | 'UNSUPPORTED_SCHEMA' | 'INVALID_GRAMMAR' | 'CONSTRAINT_FAILED'>>();
assertType<Equal<typeof ErrorCode.NO_WEBGPU, 'NO_WEBGPU'>>();
assertType<Equal<FinishReason, 'stop' | 'length' | 'abort' | 'tool_calls'>>();

const MODEL = new URL('/models/Llama-3.2-1B-Instruct-Q4_K_M-00001-of-00002.gguf', location.href).href;

/** Progress bar + cancel button + cache helpers. */
async function load(bar: HTMLProgressElement, cancel: HTMLButtonElement): Promise<LlamaEngine | null> {
  if (!(await LlamaEngine.isSupported())) return null;
  const offline: boolean = await LlamaEngine.hasModelInCache(MODEL);
  const shape: ModelShape = { nLayer: 16, nEmbd: 2048, nHead: 32, nHeadKv: 8, nFf: 8192, nVocab: 128256, contextLength: 131072 };
  const planOptions: PlanOptions = {
    weightsBytes: 807_700_000,
    contextSize: 2048,
    device: { shaderF16: true, maxBufferSize: 1 << 30, maxStorageBufferBindingSize: 1 << 27 },
  };
  const plan: MemoryPlan = await LlamaEngine.planMemory({ ...shape, headDim: 64 }, planOptions);
  if (plan.totalBytes > plan.weightsBytes + plan.kvCacheBytes + plan.activationsBytes || plan.contextSize > plan.maxContextSize) return null;
  const controller = new AbortController();
  cancel.onclick = () => controller.abort();
  const warnings: LoadWarning[] = [];
  const options: LoadOptions = {
    signal: controller.signal,
    onProgress: (p: LoadProgress) => {
      bar.max = p.totalBytes;
      bar.value = p.loadedBytes;
      bar.title = `${p.phase} ${p.tensorsLoaded}/${p.tensorsTotal} tensors, ${(p.bytesPerSecond / 1e6).toFixed(1)} MB/s`;
      if (p.phase === 'compile') bar.removeAttribute('value');
    },
    onWarning: (w) => {
      warnings.push(w);
      if (w.code === 'CACHE_QUOTA' || w.code === 'OFFLINE') console.warn(w.message, w.url, w.shardIndex);
    },
    contextSize: 2048,
    cache: true,
    worker: true,
    precision: 'auto',
    subgroups: true,
    intDot: false,
    tuning: { norm: 'fused', swiglu: 'separate', join: 'fused', matvecThreads: 16, matvecRows: 2 },
    sha256: { [MODEL]: 'ab'.repeat(32) },
    retries: 3,
    wasmUrl: new URL('/assets/llama_webgpu_bg.wasm', location.href).href,
    workerUrl: new URL('/assets/worker.js', location.href).href,
    maxStorageBinding: 128 << 20,
  };
  try {
    const engine = await LlamaEngine.load(MODEL, options);
    const info: EngineInfo = engine.info;
    const m = info.model;
    console.log(m.architecture, m.nLayer, m.nEmbd, m.nHead, m.nHeadKv, m.nFf, m.nVocab, m.contextLength, m.contextSize,
      m.bosId ?? 'no BOS', m.stopIds.join(','), m.hasChatTemplate, m.source[0], m.sizeBytes);
    if (m.memory) console.log(m.memory.weightsBytes + m.memory.kvCacheBytes + m.memory.activationsBytes === m.memory.totalBytes, m.memory.contextSize <= m.memory.maxContextSize);
    console.log(info.adapter.name, info.adapter.vendor, info.adapter.architecture ?? '', info.adapter.backend, info.adapter.driver);
    console.log(info.features.shaderF16, info.features.subgroups, info.features.subgroupMinSize, info.features.intDot, info.features.intDotAvailable, info.limits.maxStorageBufferBindingSize, info.limits.maxBufferSize);
    console.log(info.kernels.norm === 'fused', info.kernels.swiglu, info.kernels.join);
    console.log(info.load.seconds, info.load.bytesPerSecond, info.load.fromCacheBytes, info.load.wasmMemoryBytes,
      info.load.warnings.map((w) => w.code), offline, warnings.length);
    return engine;
  } catch (e) {
    if (e instanceof LlamaError) {
      describe(e);
      return null;
    }
    throw e;
  }
}

/** Every error code, exhaustively: adding a code to ErrorCode without a case breaks this. */
function describe(e: LlamaError): string {
  const code: ErrorCode = e.code;
  switch (code) {
    case ErrorCode.NO_WEBGPU: return 'This browser has no WebGPU.';
    case ErrorCode.NETWORK_ERROR: return `Download failed: ${e.details?.url ?? ''} ${e.details?.status ?? ''}`;
    case ErrorCode.INTEGRITY_ERROR: return `Corrupt download: got ${String(e.details?.actual)}`;
    case ErrorCode.ABORTED: return 'Cancelled.';
    case ErrorCode.OUT_OF_MEMORY:
    case ErrorCode.DEVICE_LOST:
    case ErrorCode.GPU_ERROR: return 'GPU problem: ' + e.message;
    case ErrorCode.BAD_GGUF:
    case ErrorCode.BAD_SPLIT:
    case ErrorCode.BAD_MODEL:
    case ErrorCode.UNSUPPORTED_TENSOR_TYPE:
    case ErrorCode.UNSUPPORTED_ARCHITECTURE: return 'Unusable model file.';
    case 'CONTEXT_FULL':
    case 'PROMPT_TOO_LONG': return 'The conversation is too long.';
    case ErrorCode.INVALID_PROMPT:
    case ErrorCode.BAD_TOKEN:
    case ErrorCode.TOKENIZER_ERROR:
    case ErrorCode.TEMPLATE_ERROR:
    case ErrorCode.INVALID_SAMPLING_PARAMS:
    case ErrorCode.INVALID_ARGUMENT: return 'Bad request: ' + e.message;
    case ErrorCode.NOT_LOADED: return 'Load a model first.';
    case ErrorCode.IO_ERROR: return 'Cannot read the file.';
    case ErrorCode.INVALID_SCHEMA:
    case ErrorCode.UNSUPPORTED_SCHEMA:
    case ErrorCode.INVALID_GRAMMAR:
    case ErrorCode.CONSTRAINT_FAILED: return 'Bad structured-output request: ' + e.message;
    default: {
      const never: never = code;
      return never;
    }
  }
}

async function chat(engine: LlamaEngine, out: HTMLElement): Promise<void> {
  // Non-streaming.
  const history: ChatCompletionMessageParam[] = [
    { role: 'system', content: 'You are terse.' },
    { role: 'user', content: [{ type: 'text', text: 'Why is the sky ' }, { type: 'text', text: 'blue?' }] },
  ];
  const reply = await engine.chat.completions.create({
    messages: history,
    max_tokens: 128,
    temperature: 0.7,
    top_p: 0.9,
    top_k: 40,
    min_p: 0.05,
    frequency_penalty: 0.1,
    presence_penalty: 0.1,
    repetition_penalty: 1.1,
    seed: 42,
    stop: ['\n\n'],
    logit_bias: { 128009: -5 },
    logprobs: true,
    top_logprobs: 3,
    ignore_eos: false,
    model: 'llama-3.2-1b',
    n: 1,
  });
  assertType<Equal<typeof reply, ChatCompletion>>();
  const choice = reply.choices[0]!;
  const reason: 'stop' | 'length' | 'abort' | 'tool_calls' = choice.finish_reason;
  out.textContent = `${choice.message.content} (${reason}, ${reply.usage.total_tokens} tokens, `
    + `${reply.usage.prompt_tokens_details.cached_tokens} cached, ${reply.usage.extra.decode_tokens_per_s} tok/s, `
    + `${reply.usage.extra.prefill_tokens_per_s} prefill tok/s, TTFT ${reply.usage.extra.time_to_first_token_ms} ms)`;
  for (const lp of choice.logprobs?.content ?? []) {
    console.log(lp.token, lp.logprob, lp.bytes.length, lp.top_logprobs.map((t) => `${t.token}:${t.logprob}:${t.bytes.length}`));
  }

  // KV reuse: send the whole history plus the answer and a new turn.
  history.push(choice.message, { role: 'user', content: 'Shorter.' });
  const second = await engine.chat.completions.create({ messages: history, max_completion_tokens: 32, stop: '.', seed: null });
  console.log(second.usage.prompt_tokens_details.cached_tokens, second.object === 'chat.completion', second.id, second.created, second.model);

  // Streaming, with usage and an abort button.
  const controller = new AbortController();
  const stream = await engine.chat.completions.create({
    messages: [{ role: 'user', content: 'Tell me a story.' }],
    stream: true,
    stream_options: { include_usage: true },
    signal: controller.signal,
  });
  assertType<Equal<typeof stream, AsyncIterable<ChatCompletionChunk>>>();
  let finish: FinishReason | null = null;
  try {
    for await (const chunk of stream) {
      const c = chunk.choices[0];
      if (c) {
        if (c.delta.role === 'assistant') out.textContent = '';
        out.textContent += c.delta.content ?? '';
        finish = c.finish_reason ?? finish;
        if (c.logprobs) console.log(c.logprobs.content[0]?.logprob);
      }
      if (chunk.usage) console.log(chunk.usage.completion_tokens, chunk.object === 'chat.completion.chunk');
      if ((out.textContent?.length ?? 0) > 2000) controller.abort();
    }
  } catch (e) {
    if (!(e instanceof LlamaError && e.code === ErrorCode.ABORTED)) throw e;
  }
  if (finish === 'abort') console.log('interrupted');

  // interrupt(): the request resolves normally with finish_reason 'abort'.
  const pending = engine.chat.completions.create({ messages: [{ role: 'user', content: 'Count to 1000.' }] });
  setTimeout(() => engine.interrupt(), 500);
  const cut = await pending;
  if (cut.choices[0]?.finish_reason === 'abort') console.log('stopped early');

  // A request whose `stream` is only known at run time.
  const flag: boolean = Math.random() < 0.5;
  const either = await engine.chat.completions.create({ messages: history, stream: flag });
  if (Symbol.asyncIterator in either) {
    for await (const chunk of either) console.log(chunk.choices.length);
  } else {
    console.log(either.choices[0]?.message.content);
  }

  await engine.resetChat();

  const bench: BenchmarkResult = await engine.benchmark({ promptTokens: 16, decodeTokens: 8, profileSteps: 0 });
  const kernels: KernelTime[] | null = bench.profile;
  console.log(bench.decode.tokensPerSecond, bench.decode.weightGBPerSecond, bench.features.timestampQuery, kernels?.[0]?.msPerToken, JSON.stringify(await engine.benchmark()));
}

async function completions(engine: LlamaEngine): Promise<void> {
  const c = await engine.completions.create({ prompt: 'The capital of France is', max_tokens: 8, temperature: 0, logprobs: true });
  assertType<Equal<typeof c, Completion>>();
  console.log(c.object === 'text_completion', c.choices[0]?.text, c.choices[0]?.logprobs?.content.length, c.usage.completion_tokens);

  const ids = await engine.tokenize('The capital of France is', { addBos: true, parseSpecial: false });
  const fromIds = await engine.completions.create({ prompt: ids, max_tokens: 4 });
  console.log(fromIds.choices[0]?.finish_reason);

  const s = await engine.completions.create({ prompt: 'Once upon a time', stream: true, stream_options: { include_usage: true } });
  assertType<Equal<typeof s, AsyncIterable<CompletionChunk>>>();
  let text = '';
  for await (const chunk of s) {
    text += chunk.choices[0]?.text ?? '';
    if (chunk.choices[0]?.finish_reason === 'length') console.log('hit max_tokens');
    if (chunk.usage) console.log(chunk.usage.total_tokens);
  }
  console.log(text);
}

async function lowLevel(engine: LlamaEngine): Promise<void> {
  const controller = new AbortController();
  let n = 0;
  const it = engine.generate('Once upon a time', { max_tokens: 64, temperature: 0, stop: ['THE END'], signal: controller.signal });
  assertType<Equal<typeof it, AsyncIterable<GeneratedToken>>>();
  for await (const { id, text } of it) {
    if (id !== null && ++n === 10) break; // breaking out stops the generation
    console.log(text);
  }
  for await (const t of engine.generate(new Uint32Array([1, 2, 3]), { seed: 1 })) console.log(t.id, t.text);
  for await (const t of engine.generate([1, 2, 3])) console.log(t.text);

  const ids: number[] = await engine.tokenize('<|eot_id|>', { parseSpecial: true, addBos: false });
  const back: string = await engine.detokenize(ids, { renderSpecial: true });
  const back2: string = await engine.detokenize(Uint32Array.from(ids));
  console.log(back, back2);
}

async function files(input: HTMLInputElement): Promise<void> {
  // All shards of a split model, picked at once; or one File.
  const engine = input.files && input.files.length > 1
    ? await LlamaEngine.load(input.files, { worker: false, precision: 'f32' })
    : await LlamaEngine.load(input.files![0]!);
  const list: File[] = Array.from(input.files ?? []);
  const e2 = await LlamaEngine.load(list, { cache: false });
  await e2.unload();
  await engine.unload();
}

async function cacheHelpers(): Promise<void> {
  const shards = [MODEL, MODEL.replace('00001-of', '00002-of')];
  if (await LlamaEngine.hasModelInCache(shards)) {
    const removed: boolean = await LlamaEngine.deleteModelFromCache(shards);
    console.log(removed);
  }
}

async function main(): Promise<void> {
  const engine = await load(document.querySelector('progress')!, document.querySelector('button')!);
  if (!engine) return;
  await chat(engine, document.body);
  await completions(engine);
  await lowLevel(engine);
  await engine.unload();
  await files(document.querySelector('input')!);
  await cacheHelpers();
  const err = new LlamaError(ErrorCode.INVALID_ARGUMENT, 'bad', { url: MODEL, status: 404 });
  console.log(err.name === 'LlamaError', err instanceof Error, err.code, err.details?.status);
}

void main();
