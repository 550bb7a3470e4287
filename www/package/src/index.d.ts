// Type declarations for llama-webgpu's public API (./index.js).
//
// Llama 3.x inference in the browser on WebGPU: GGUF files (split shards too) are streamed from the
// network or disk straight into GPU memory, cached offline in the origin-private file system, and
// served through an OpenAI-style chat API from a Web Worker.

// ---------------------------------------------------------------------------------------------
// Errors

/**
 * The stable error codes of {@link LlamaError}, shared by the wasm engine and the JS layers.
 *
 * | code | meaning |
 * |---|---|
 * | `NO_WEBGPU` | no WebGPU, no adapter, no device, or `precision: 'f16'` without shader-f16 |
 * | `BAD_GGUF` | the file is not a valid GGUF (or a load failed for an unclassified reason) |
 * | `BAD_SPLIT` | a shard of a split model is missing, repeated, foreign or misnamed |
 * | `UNSUPPORTED_TENSOR_TYPE` | a tensor uses a quantization this engine cannot run |
 * | `UNSUPPORTED_ARCHITECTURE` | `general.architecture` is not `llama` |
 * | `BAD_MODEL` | tensors or hyperparameters do not form a valid Llama model |
 * | `OUT_OF_MEMORY` | the GPU could not allocate the weights or the KV cache |
 * | `DEVICE_LOST` | the GPU device was lost (driver reset, tab in the background too long, ...) |
 * | `GPU_ERROR` | another WebGPU failure, or the engine worker died |
 * | `NETWORK_ERROR` | HTTP error, CORS, an unreachable shard, or a download that kept failing |
 * | `INTEGRITY_ERROR` | a shard's SHA-256 differs from {@link LoadOptions.sha256} |
 * | `ABORTED` | an `AbortSignal` fired |
 * | `CONTEXT_FULL` | the KV cache is full |
 * | `PROMPT_TOO_LONG` | the prompt does not fit in the context |
 * | `INVALID_PROMPT` | bad `messages` / `prompt` (empty, wrong types, non-text content parts) |
 * | `BAD_TOKEN` | a token id outside the vocabulary |
 * | `TOKENIZER_ERROR` | the tokenizer failed |
 * | `TEMPLATE_ERROR` | the model's chat template failed to render the messages |
 * | `INVALID_SAMPLING_PARAMS` | a sampling field is out of range (e.g. `temperature: -1`) |
 * | `INVALID_ARGUMENT` | any other bad argument (`n: 2`, a bad URL, an unknown `precision`, ...) |
 * | `NOT_LOADED` | the engine was unloaded |
 * | `IO_ERROR` | a local File could not be read |
 *
 * @example
 * ```ts
 * import { ErrorCode, LlamaError } from 'llama-webgpu';
 * try { await LlamaEngine.load(url); }
 * catch (e) { if (e instanceof LlamaError && e.code === ErrorCode.NO_WEBGPU) showFallback(); }
 * ```
 */
export declare const ErrorCode: Readonly<{
  NO_WEBGPU: 'NO_WEBGPU';
  BAD_GGUF: 'BAD_GGUF';
  BAD_SPLIT: 'BAD_SPLIT';
  UNSUPPORTED_TENSOR_TYPE: 'UNSUPPORTED_TENSOR_TYPE';
  UNSUPPORTED_ARCHITECTURE: 'UNSUPPORTED_ARCHITECTURE';
  BAD_MODEL: 'BAD_MODEL';
  OUT_OF_MEMORY: 'OUT_OF_MEMORY';
  DEVICE_LOST: 'DEVICE_LOST';
  GPU_ERROR: 'GPU_ERROR';
  NETWORK_ERROR: 'NETWORK_ERROR';
  INTEGRITY_ERROR: 'INTEGRITY_ERROR';
  ABORTED: 'ABORTED';
  CONTEXT_FULL: 'CONTEXT_FULL';
  PROMPT_TOO_LONG: 'PROMPT_TOO_LONG';
  INVALID_PROMPT: 'INVALID_PROMPT';
  BAD_TOKEN: 'BAD_TOKEN';
  TOKENIZER_ERROR: 'TOKENIZER_ERROR';
  TEMPLATE_ERROR: 'TEMPLATE_ERROR';
  INVALID_SAMPLING_PARAMS: 'INVALID_SAMPLING_PARAMS';
  INVALID_ARGUMENT: 'INVALID_ARGUMENT';
  /** `response_format.json_schema.schema` (or a tool's `parameters`) is not valid JSON Schema. */
  INVALID_SCHEMA: 'INVALID_SCHEMA';
  /** The schema is valid but uses a keyword the engine cannot enforce (it never ignores one). */
  UNSUPPORTED_SCHEMA: 'UNSUPPORTED_SCHEMA';
  /** A `grammar` (Lark or GBNF) or regex does not compile. */
  INVALID_GRAMMAR: 'INVALID_GRAMMAR';
  /** Constrained decoding reached a state where no token is allowed. */
  CONSTRAINT_FAILED: 'CONSTRAINT_FAILED';
  NOT_LOADED: 'NOT_LOADED';
  IO_ERROR: 'IO_ERROR';
}>;

/** One of the {@link ErrorCode} strings. */
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

/**
 * Extra facts attached to some errors. Network errors carry `url` and, when the server answered,
 * `status`; integrity errors carry `url` (or `name` for Files), `expected` and `actual` hashes.
 */
export interface LlamaErrorDetails {
  /** The URL involved (network and integrity errors). */
  url?: string;
  /** The HTTP status, when the server answered (network errors). */
  status?: number;
  /** The shard's file name (integrity errors). */
  name?: string;
  /** The expected SHA-256, lowercase hex (integrity errors). */
  expected?: string;
  /** The SHA-256 of the bytes received, lowercase hex (integrity errors). */
  actual?: string;
  /** `OUT_OF_MEMORY`: the buffer that could not be created, e.g. `"buffer 'k cache 0'"`. */
  what?: string;
  /** `OUT_OF_MEMORY`: that buffer's size in bytes. */
  requestBytes?: number;
  /** `OUT_OF_MEMORY`: the device limit the buffer is over (`'maxBufferSize'` or
   *  `'maxStorageBufferBindingSize'`), or null when the device refused it within its limits. */
  overLimit?: string | null;
  /** `OUT_OF_MEMORY`: the browser's own message when the device refused. */
  deviceMessage?: string | null;
  /** `OUT_OF_MEMORY`: bytes of the model's buffers created before the failure; when the
   *  device refused, at least this much GPU memory is available. */
  allocatedBytes?: number;
  /** `OUT_OF_MEMORY`: what the model needs in all (weights + KV cache + activations) at
   *  `contextSize`; a lower bound when `neededIsLowerBound` (a split model that failed before
   *  its last shard's header). */
  neededBytes?: number | null;
  neededIsLowerBound?: boolean;
  weightsBytes?: number | null;
  kvCacheBytes?: number | null;
  activationsBytes?: number | null;
  contextSize?: number | null;
  /** `OUT_OF_MEMORY`: the largest context whose KV cache layers fit the device's limits. */
  maxContextSize?: number | null;
  maxBufferSize?: number;
  maxStorageBufferBindingSize?: number;
  [key: string]: unknown;
}

/**
 * Every failure the package reports, whether it happened in the page, the worker or the wasm
 * engine: an `Error` with a machine-readable {@link ErrorCode} to switch on and a message that
 * names the URL, tensor or parameter involved.
 */
export declare class LlamaError extends Error {
  /**
   * @param code one of {@link ErrorCode}
   * @param message what went wrong
   * @param details extra facts, e.g. `{url, status}` for network errors
   */
  constructor(code: ErrorCode, message: string, details?: LlamaErrorDetails);
  /** Always `'LlamaError'`. */
  name: 'LlamaError';
  /** What kind of failure this is. */
  code: ErrorCode;
  /** Extra facts, present only for some errors. */
  details?: LlamaErrorDetails;
}

// ---------------------------------------------------------------------------------------------
// Loading

/**
 * Where a model comes from:
 *
 * - a URL string (absolute, or relative to the page — see the note below). A gguf-split name
 *   (`name-00001-of-00003.gguf`) is enough: the other shards' URLs are derived from it (query
 *   strings are kept);
 * - a list of URL strings: all shards of one split model, in any order;
 * - a `File`/`Blob` (e.g. from `<input type="file">`);
 * - the `File`s of all shards of a split model, as an array or a `FileList`.
 *
 * In worker mode (the default) a relative URL is resolved against the worker script's URL, so
 * prefer absolute URLs: `new URL('models/x.gguf', location.href).href`.
 */
export type ModelSource = string | readonly string[] | Blob | readonly Blob[] | FileList;

/** What {@link LoadOptions.onProgress} receives, about every 100 ms while a load runs. */
export interface LoadProgress {
  /**
   * `'download'`: bytes come from the network; `'upload'`: from the cache or a local File (they
   * still stream into GPU memory); `'compile'`: every byte is on the GPU and the kernels are being
   * built (no byte counts move in this phase).
   */
  phase: 'download' | 'upload' | 'compile';
  /** Bytes of all shards consumed so far. */
  loadedBytes: number;
  /** Bytes of all shards together (known before the first byte is read). */
  totalBytes: number;
  /** Tensors fully uploaded to the GPU so far. */
  tensorsLoaded: number;
  /** Tensors in the model (0 until the first shard's header has been read). */
  tensorsTotal: number;
  /** Recent rate at which model bytes arrive (network, cache or File), in bytes per second. */
  bytesPerSecond: number;
}

/**
 * Codes of non-fatal load warnings: the load goes on.
 *
 * - `CACHE_UNAVAILABLE`: no OPFS or WebCrypto here (not a secure context?); nothing is cached.
 * - `CACHE_QUOTA`: the cache could not be written (usually the storage quota); continuing uncached.
 * - `CACHE_BUSY`: another tab or worker is caching the same shard; this load does not use the cache.
 * - `CACHE_CORRUPT`: a cached chunk failed its check; it is downloaded again from there.
 * - `OFFLINE`: the network failed, but the complete cached copy is used.
 */
export type LoadWarningCode = 'CACHE_CORRUPT' | 'CACHE_QUOTA' | 'CACHE_BUSY' | 'CACHE_UNAVAILABLE' | 'OFFLINE';

/** What {@link LoadOptions.onWarning} receives. */
export interface LoadWarning {
  type: 'warning';
  code: LoadWarningCode;
  /** A readable description naming the URL involved. */
  message: string;
  /** The 0-based shard the warning is about, when it is about one. */
  shardIndex?: number;
  /** The shard's URL, when it is about one. */
  url?: string;
}

/** Options of {@link LlamaEngine.load}. All are optional. */
export interface LoadOptions {
  /**
   * Called with load progress about every 100 ms; the last call has `phase: 'compile'` and
   * `loadedBytes === totalBytes`.
   */
  onProgress?: (progress: LoadProgress) => void;
  /** Called for each non-fatal warning (they are also collected in `info.load.warnings`). */
  onWarning?: (warning: LoadWarning) => void;
  /**
   * Cancels the load at any point: `load()` rejects with `ABORTED` and everything allocated so
   * far (GPU buffers, the worker) is freed.
   */
  signal?: AbortSignal;
  /**
   * Tokens of context (prompt + answer) to allocate the KV cache for; never more than the
   * model's trained context length. Default: the model's, at most 4096 and at most what the
   * device's buffer limits allow. The memory plan is made as soon as the first shard's header
   * has arrived: the KV cache is allocated then and the weights of later shards reserved, so a
   * context or a model that does not fit rejects with `OUT_OF_MEMORY` before the weights
   * download. See {@link ModelInfo.memory}.
   */
  contextSize?: number;
  /**
   * Keep downloaded URL shards in the origin-private file system so later loads (and reloads in
   * the middle of a download) read them from disk. Default `true`.
   */
  cache?: boolean;
  /**
   * Run the engine in a dedicated module Web Worker so loading and generation never block the
   * page. Default `true` (falls back to the calling thread where `Worker` does not exist).
   */
  worker?: boolean;
  /**
   * `'auto'` (default): f16 KV cache and f16 kernels where the adapter has `shader-f16`, f32
   * otherwise. `'f32'`: always the f32 kernels. `'f16'`: require `shader-f16` (`NO_WEBGPU` when
   * the adapter lacks it). Weights stay quantized either way.
   */
  precision?: 'auto' | 'f16' | 'f32';
  /**
   * Expected SHA-256 (hex) of whole shards, keyed by absolute URL or by file name. Listed shards
   * are hashed as they stream in; a mismatch fails the load with `INTEGRITY_ERROR` and drops the
   * cached copy. A verified cached shard is not hashed again.
   */
  sha256?: Record<string, string>;
  /** Consecutive failed attempts allowed per shard before `NETWORK_ERROR` (default 5). */
  retries?: number;
  /**
   * URL of `llama_webgpu_bg.wasm` when it is not served beside the package's `wasm/` folder
   * (e.g. from a bundler's asset import). Pass a string; make it absolute in worker mode.
   */
  wasmUrl?: string;
  /**
   * URL of the package's `worker.js` when a bundler does not emit it beside `index.js`. Pass a
   * string (`url.href` for a URL object).
   */
  workerUrl?: string;
  /**
   * Caps the storage-buffer binding size the kernels assume (bytes), below the adapter's
   * `maxStorageBufferBindingSize`; larger tensors are split into row blocks. For testing.
   */
  maxStorageBinding?: number;
}

// ---------------------------------------------------------------------------------------------
// Engine info

/** Facts about the loaded model. */
export interface ModelInfo {
  /** `'llama'`. */
  architecture: string;
  /** Transformer blocks. */
  nLayer: number;
  /** Embedding width. */
  nEmbd: number;
  /** Attention heads. */
  nHead: number;
  /** Key/value heads (grouped-query attention). */
  nHeadKv: number;
  /** Feed-forward width. */
  nFf: number;
  /** Vocabulary size. */
  nVocab: number;
  /** The context length the model was trained for. */
  contextLength: number;
  /** The context this engine allocated ({@link LoadOptions.contextSize}). */
  contextSize: number;
  /** What the model takes in GPU memory (null if no plan could be made before the end). */
  memory: MemoryPlan | null;
  /** The BOS token id, or null when the model has none. */
  bosId: number | null;
  /** Token ids that end a generation (EOS, end-of-turn). */
  stopIds: number[];
  /** Whether the GGUF carries a chat template (`chat.completions` needs one). */
  hasChatTemplate: boolean;
  /** The URL (or File name) of every shard, in order. */
  source: string[];
  /** Bytes of all shards together. */
  sizeBytes: number;
}

/** GPU memory a model takes at its context size, as planned at its first header. */
export interface MemoryPlan {
  /** The weights as uploaded (norm vectors as f32). */
  weightsBytes: number;
  /** K and V of every layer for `contextSize` positions. */
  kvCacheBytes: number;
  /** Activation buffers, the logits of a prefill chunk included. */
  activationsBytes: number;
  totalBytes: number;
  contextSize: number;
  /** The largest context whose KV cache layers fit this device's buffer limits. */
  maxContextSize: number;
}

/** The WebGPU adapter the engine runs on. */
export interface AdapterInfo {
  /** The adapter's description (from `GPUAdapterInfo`), when the browser tells. */
  name: string;
  /** The vendor (from `GPUAdapterInfo`: a string, possibly empty; a number where the browser gives no `adapter.info`). */
  vendor: string | number;
  /** The architecture (from `GPUAdapterInfo`), when the browser tells. */
  architecture?: string;
  /** Driver description, usually empty in browsers. */
  driver: string;
  /** wgpu's backend name (`'BrowserWebGpu'` in a browser). */
  backend: string;
}

/** Optional WebGPU features in use. The engine works without either. */
export interface FeatureInfo {
  /** `shader-f16`: f16 KV cache and arithmetic. */
  shaderF16: boolean;
  /** Subgroup operations for faster reductions. */
  subgroups: boolean;
}

/** The device limits the engine was given. */
export interface LimitsInfo {
  maxBufferSize: number;
  maxStorageBufferBindingSize: number;
  maxComputeInvocationsPerWorkgroup: number;
  maxComputeWorkgroupStorageSize: number;
  maxStorageBuffersPerShaderStage: number;
}

/** Facts about the load that made this engine. */
export interface LoadInfo {
  /** Wall time of the whole load. */
  seconds: number;
  /** Model bytes per second over the whole load. */
  bytesPerSecond: number;
  /** Bytes of shards that were complete in the cache. */
  fromCacheBytes: number;
  /** Size of the wasm memory after the load (its peak: wasm memory never shrinks). */
  wasmMemoryBytes: number;
  /** The warnings the load reported (see {@link LoadOptions.onWarning}). */
  warnings: Array<{ code: LoadWarningCode; message: string }>;
}

/** `engine.info`: the model, the GPU and the load. */
export interface EngineInfo {
  model: ModelInfo;
  adapter: AdapterInfo;
  features: FeatureInfo;
  limits: LimitsInfo;
  load: LoadInfo;
}

// ---------------------------------------------------------------------------------------------
// Requests

/**
 * Sampling and stopping fields shared by chat completions, completions and `generate()`.
 * Sampling runs penalties → logit bias → top-k → top-p → min-p → temperature → seeded draw.
 */
export interface SamplingOptions {
  /** Most tokens to generate (default, and at most: what is left of the context). */
  max_tokens?: number | null;
  /** OpenAI's newer name for `max_tokens`; `max_tokens` wins when both are set. */
  max_completion_tokens?: number | null;
  /** 0 is greedy (the most likely token every time). In [0, 100]. */
  temperature?: number | null;
  /** Nucleus sampling: keep the most likely tokens whose probabilities add up to this. In (0, 1]. */
  top_p?: number | null;
  /** Keep only the k most likely tokens (0: all). In [0, nVocab]. */
  top_k?: number | null;
  /** Drop tokens less likely than `min_p` × the most likely one. In [0, 1]. */
  min_p?: number | null;
  /** Penalizes tokens by how often they already appeared. In [-2, 2]. */
  frequency_penalty?: number | null;
  /** Penalizes tokens that already appeared. In [-2, 2]. */
  presence_penalty?: number | null;
  /** llama.cpp's repeat penalty (1: off). Greater than 0, at most 100. */
  repetition_penalty?: number | null;
  /** Non-negative integer for reproducible sampling (default: random). */
  seed?: number | null;
  /** Text that ends the generation (not included in the output): one string or several. */
  stop?: string | readonly string[] | null;
  /** Bias added to the logits of token ids: `{128009: -100}`. */
  logit_bias?: Record<string, number> | null;
  /** Keep generating past the model's end-of-turn tokens. */
  ignore_eos?: boolean;
  /**
   * Structured output, enforced token by token (the output always matches; a schema or grammar
   * that cannot be enforced is an error before generation, never a silent fallback):
   * `{type: 'json_object'}`, `{type: 'json_schema', json_schema: {name, schema, strict}}`,
   * `{type: 'grammar', grammar}` (Lark or GBNF, as WebLLM takes it) or `{type: 'regex', pattern}`.
   */
  response_format?: ResponseFormat | null;
  /**
   * A grammar the output must match: Lark (llguidance's dialect, e.g. `start: /[0-9]+/`) or
   * GBNF (`root ::= ...`, llama.cpp's format). The same as `response_format: {type: 'grammar'}`.
   */
  grammar?: string | null;
  /**
   * Cancels the request: the promise (or the stream's next iteration) rejects with `ABORTED`.
   * The KV cache is kept. Use {@link LlamaEngine.interrupt} to end a request normally instead.
   */
  signal?: AbortSignal;
}

/** What {@link SamplingOptions.response_format} accepts. */
export type ResponseFormat =
  | { type: 'text' }
  | { type: 'json_object' }
  | {
      type: 'json_schema';
      json_schema: {
        name?: string;
        description?: string;
        /** A JSON Schema (draft 2020-12 keywords; see README for what is enforced). */
        schema: Record<string, unknown> | boolean;
        /** Accepted for compatibility; the schema is always enforced strictly. */
        strict?: boolean | null;
      };
    }
  | { type: 'grammar'; grammar: string }
  | { type: 'regex'; pattern: string };

/** A function the model may call (OpenAI's `tools` entry). */
export interface ChatCompletionTool {
  type: 'function';
  function: {
    name: string;
    description?: string;
    /** JSON Schema of the arguments object (default: any object). */
    parameters?: Record<string, unknown>;
  };
}

/**
 * Which tool the model may call: `'auto'` (a call or a text answer; the default with tools),
 * `'none'` (tools are not shown to the model), `'required'` (some call), or one named function.
 * With `'required'` or a named function the call is constrained to that function's schema;
 * with `'auto'` a reply that starts as a call is constrained too.
 */
export type ChatCompletionToolChoiceOption =
  | 'auto'
  | 'none'
  | 'required'
  | { type: 'function'; function: { name: string } };

/** A tool call the assistant made. */
export interface ChatCompletionMessageToolCall {
  /** `call-…`, unique per call: answer it with a `role: 'tool'` message with this `tool_call_id`. */
  id: string;
  type: 'function';
  function: {
    name: string;
    /** The arguments as JSON text (valid against the function's `parameters`). */
    arguments: string;
  };
}

/** Fields shared by chat and text completion requests. */
export interface CompletionRequestBase extends SamplingOptions {
  /** Echoed in the response's `model` (default: the first shard's URL or file name). */
  model?: string | null;
  /** Return the log-probability of each generated token. */
  logprobs?: boolean | null;
  /** Also return the most likely alternatives at each position (0–20); needs `logprobs: true`. */
  top_logprobs?: number | null;
  /** Stream chunks as tokens are generated instead of one response at the end. */
  stream?: boolean | null;
  /** With `stream: true`: `include_usage` adds a last chunk with `usage` and no choices. */
  stream_options?: { include_usage?: boolean } | null;
  /** Number of choices: only 1 is supported. */
  n?: 1;
}

/** A text part of a message's content (the only kind a text model accepts). */
export interface ChatCompletionContentPartText {
  type: 'text';
  text: string;
}

/** The roles a chat message can have. */
export type ChatRole = 'system' | 'user' | 'assistant' | 'tool';

/** One message of a conversation; `role` and `content` are what the chat template renders. */
export interface ChatCompletionMessageParam {
  role: ChatRole;
  /** A string, or text parts, which are concatenated (null for an assistant turn with `tool_calls`). */
  content: string | readonly ChatCompletionContentPartText[] | null;
  /** An assistant turn's tool calls, as a response returned them. */
  tool_calls?: readonly ChatCompletionMessageToolCall[];
  /** A `tool` message: the `id` of the call it answers. */
  tool_call_id?: string;
  /** A `tool` message: the function's name (optional). */
  name?: string;
}

/** A request to {@link LlamaEngine.chat}`.completions.create`. */
export interface ChatCompletionRequest extends CompletionRequestBase {
  /** The conversation so far (non-empty), rendered with the model's chat template. */
  messages: readonly ChatCompletionMessageParam[];
  /** Functions the model may call; rendered by the model's chat template (e.g. Llama 3.1's). */
  tools?: readonly ChatCompletionTool[] | null;
  /** Default `'auto'` with tools. */
  tool_choice?: ChatCompletionToolChoiceOption | null;
}

/** A chat request with `stream: true`. */
export interface ChatCompletionRequestStreaming extends ChatCompletionRequest {
  stream: true;
}

/** A chat request without streaming. */
export interface ChatCompletionRequestNonStreaming extends ChatCompletionRequest {
  stream?: false | null;
}

/** A request to {@link LlamaEngine.completions}`.create`: raw text continuation, no chat template. */
export interface CompletionRequest extends CompletionRequestBase {
  /** Text (tokenized with BOS when the model uses one) or token ids (used as they are). */
  prompt: string | readonly number[];
}

/** A completion request with `stream: true`. */
export interface CompletionRequestStreaming extends CompletionRequest {
  stream: true;
}

/** A completion request without streaming. */
export interface CompletionRequestNonStreaming extends CompletionRequest {
  stream?: false | null;
}

/** Options of {@link LlamaEngine.generate}: the sampling fields and `signal`. */
export interface GenerateOptions extends SamplingOptions {}

/** Options of {@link LlamaEngine.tokenize}. */
export interface TokenizeOptions {
  /** Put the BOS token first when the model uses one. Default `true`. */
  addBos?: boolean;
  /** Turn special-token text such as `<|eot_id|>` into its id. Default `false`. */
  parseSpecial?: boolean;
}

/** Options of {@link LlamaEngine.detokenize}. */
export interface DetokenizeOptions {
  /** Include the text of control tokens (`<|eot_id|>`). Default `false`. */
  renderSpecial?: boolean;
}

// ---------------------------------------------------------------------------------------------
// Responses

/**
 * Why a generation ended: `'stop'` — an end-of-turn token or a `stop` string; `'length'` —
 * `max_tokens` or the end of the context; `'abort'` — {@link LlamaEngine.interrupt} (an aborted
 * `signal` rejects instead).
 */
export type FinishReason = 'stop' | 'length' | 'abort' | 'tool_calls';

/** One alternative token in `top_logprobs`. */
export interface TopLogprob {
  /** The token's text. */
  token: string;
  /** Natural-log probability. */
  logprob: number;
  /** UTF-8 bytes of `token`. */
  bytes: number[];
}

/** The log-probability of one generated token. */
export interface TokenLogprob extends TopLogprob {
  /** The most likely tokens at this position, most likely first (`top_logprobs` of them). */
  top_logprobs: TopLogprob[];
}

/** The `logprobs` of a choice (or of a chunk): one entry per generated token. */
export interface ChoiceLogprobs {
  content: TokenLogprob[];
}

/** Speed measurements of one request (non-standard). */
export interface UsageExtra {
  /** Prompt tokens processed per second (the tokens not served from the KV cache). */
  prefill_tokens_per_s: number;
  /** Generated tokens per second after the first. */
  decode_tokens_per_s: number;
  /** Milliseconds from the start of the request's turn to the first token. */
  time_to_first_token_ms: number;
  /** With structured output: milliseconds per token spent computing the grammar's token mask. */
  mask_ms_per_token?: number;
  /** With structured output: milliseconds compiling the schema or grammar. */
  grammar_compile_ms?: number;
}

/** Token counts of one request. */
export interface CompletionUsage {
  prompt_tokens: number;
  completion_tokens: number;
  /** `prompt_tokens + completion_tokens`. */
  total_tokens: number;
  prompt_tokens_details: {
    /** Prompt tokens whose keys and values were reused from the previous request. */
    cached_tokens: number;
  };
  extra: UsageExtra;
}

/** The assistant's message in a {@link ChatCompletion}. */
export interface ChatCompletionMessage {
  role: 'assistant';
  /** The text, or null when the reply is a tool call. */
  content: string | null;
  /** The call the model made (`finish_reason: 'tool_calls'`), when it made one. */
  tool_calls?: ChatCompletionMessageToolCall[];
}

/** The one choice of a {@link ChatCompletion}. */
export interface ChatCompletionChoice {
  index: number;
  message: ChatCompletionMessage;
  /** With `logprobs: true`, one entry per generated token; else null. */
  logprobs: ChoiceLogprobs | null;
  finish_reason: FinishReason;
}

/** The response of a non-streaming chat request. */
export interface ChatCompletion {
  /** `chatcmpl-…`, unique per request. */
  id: string;
  object: 'chat.completion';
  /** Unix time in seconds. */
  created: number;
  /** The request's `model`, or the first shard's URL or file name. */
  model: string;
  /** Exactly one choice. */
  choices: ChatCompletionChoice[];
  usage: CompletionUsage;
}

/** The change a chunk makes to the assistant's message. */
export interface ChatCompletionChunkDelta {
  /** `'assistant'` in the first chunk only. */
  role?: 'assistant';
  /** New text (may be empty); absent in the final chunk. */
  content?: string;
  /**
   * A tool call as it is generated: the first delta has `id`, `type` and `function.name` (with
   * `arguments: ''`), later ones append to `function.arguments`. `index` is always 0.
   */
  tool_calls?: Array<{
    index: number;
    id?: string;
    type?: 'function';
    function: { name?: string; arguments: string };
  }>;
}

/** The choice of a {@link ChatCompletionChunk}. */
export interface ChatCompletionChunkChoice {
  index: number;
  delta: ChatCompletionChunkDelta;
  /** With `logprobs: true`, the entry of this chunk's token (null in the role and final chunks); else null. */
  logprobs: ChoiceLogprobs | null;
  /** Null until the final chunk with choices. */
  finish_reason: FinishReason | null;
}

/**
 * One streamed piece of a chat response. The stream is: a chunk with `delta.role`, chunks with
 * `delta.content`, a chunk with `finish_reason` and an empty `delta`, then — with
 * `stream_options.include_usage` — one chunk with `choices: []` and `usage`.
 */
export interface ChatCompletionChunk {
  /** The same for every chunk of a response. */
  id: string;
  object: 'chat.completion.chunk';
  created: number;
  model: string;
  /** One choice, or none in the usage chunk. */
  choices: ChatCompletionChunkChoice[];
  /** Only on the last chunk, with `stream_options.include_usage`. */
  usage?: CompletionUsage;
}

/** The one choice of a {@link Completion}. */
export interface CompletionChoice {
  index: number;
  /** The generated text. */
  text: string;
  logprobs: ChoiceLogprobs | null;
  finish_reason: FinishReason;
}

/** The response of a non-streaming completion request. */
export interface Completion {
  /** `cmpl-…`, unique per request. */
  id: string;
  object: 'text_completion';
  created: number;
  model: string;
  choices: CompletionChoice[];
  usage: CompletionUsage;
}

/** The choice of a {@link CompletionChunk}. */
export interface CompletionChunkChoice {
  index: number;
  /** New text (empty in the final chunk). */
  text: string;
  logprobs: ChoiceLogprobs | null;
  /** Null until the final chunk with choices. */
  finish_reason: FinishReason | null;
}

/**
 * One streamed piece of a completion (`object: 'text_completion'`, like the full response):
 * chunks with `text`, a chunk with `finish_reason`, then — with `stream_options.include_usage`
 * — one chunk with `choices: []` and `usage`.
 */
export interface CompletionChunk {
  id: string;
  object: 'text_completion';
  created: number;
  model: string;
  choices: CompletionChunkChoice[];
  /** Only on the last chunk, with `stream_options.include_usage`. */
  usage?: CompletionUsage;
}

/** One step of {@link LlamaEngine.generate}. */
export interface GeneratedToken {
  /** The sampled token id; null for text released without a new token (e.g. held back at the end). */
  id: number | null;
  /** Text that became final with this step; empty mid-character or while a `stop` string may be forming. */
  text: string;
}

// ---------------------------------------------------------------------------------------------
// The engine

/** `engine.chat.completions`. */
export interface ChatCompletions {
  /**
   * Answers a conversation (OpenAI Chat Completions shapes). Requests run one at a time, in order.
   * The KV cache keeps the last conversation: a follow-up that repeats it and adds a turn only
   * prefills the new tokens.
   *
   * @example
   * ```ts
   * const reply = await engine.chat.completions.create({
   *   messages: [{ role: 'user', content: 'Why is the sky blue?' }],
   *   max_tokens: 128,
   * });
   * console.log(reply.choices[0].message.content, reply.usage.extra.decode_tokens_per_s);
   *
   * const stream = await engine.chat.completions.create({
   *   messages: [{ role: 'user', content: 'Tell me a story.' }],
   *   stream: true,
   *   stream_options: { include_usage: true },
   * });
   * for await (const chunk of stream) out.textContent += chunk.choices[0]?.delta.content ?? '';
   * ```
   * @throws {LlamaError} `INVALID_PROMPT`, `PROMPT_TOO_LONG`, `INVALID_SAMPLING_PARAMS`,
   *   `INVALID_ARGUMENT`, `TEMPLATE_ERROR`, `ABORTED`, `NOT_LOADED`, GPU errors. In worker mode a
   *   streaming request's errors surface when iterating.
   */
  create(request: ChatCompletionRequestStreaming): Promise<AsyncIterable<ChatCompletionChunk>>;
  create(request: ChatCompletionRequestNonStreaming): Promise<ChatCompletion>;
  create(request: ChatCompletionRequest): Promise<ChatCompletion | AsyncIterable<ChatCompletionChunk>>;
}

/** `engine.completions`. */
export interface Completions {
  /**
   * Continues a prompt as raw text (no chat template), OpenAI Completions shapes.
   *
   * @example
   * ```ts
   * const c = await engine.completions.create({ prompt: 'The capital of France is', max_tokens: 8, temperature: 0 });
   * console.log(c.choices[0].text);
   * ```
   */
  create(request: CompletionRequestStreaming): Promise<AsyncIterable<CompletionChunk>>;
  create(request: CompletionRequestNonStreaming): Promise<Completion>;
  create(request: CompletionRequest): Promise<Completion | AsyncIterable<CompletionChunk>>;
}

/**
 * A Llama model loaded onto the GPU. Create one with {@link LlamaEngine.load}; talk to it with
 * `engine.chat.completions.create()` (OpenAI's Chat Completions shapes),
 * `engine.completions.create()`, or the lower-level `engine.generate()`.
 *
 * By default the engine runs in a dedicated Web Worker and this object is a proxy with the same
 * API; `{worker: false}` runs it in the calling thread.
 */
export declare class LlamaEngine {
  private constructor();

  /** Model, adapter and load facts. */
  readonly info: EngineInfo;

  /** OpenAI-style chat completions. */
  readonly chat: { readonly completions: ChatCompletions };

  /** OpenAI-style (legacy) text completions. */
  readonly completions: Completions;

  /**
   * Loads a GGUF model straight into GPU memory as it downloads (or as it is read from the cache
   * or a File): the whole file is never held in memory.
   *
   * @param source a URL (the first shard of a split model is enough), the URLs of all shards, a
   *   File, or the Files of all shards
   * @param options progress, cancellation, context size, cache, worker, precision, integrity
   * @returns the loaded engine
   * @throws {LlamaError} `NO_WEBGPU`, `NETWORK_ERROR`, `BAD_GGUF`, `BAD_SPLIT`, `BAD_MODEL`,
   *   `UNSUPPORTED_TENSOR_TYPE`, `UNSUPPORTED_ARCHITECTURE`, `OUT_OF_MEMORY`, `INTEGRITY_ERROR`,
   *   `ABORTED`, `INVALID_ARGUMENT`, ...
   *
   * @example
   * ```ts
   * import { LlamaEngine } from 'llama-webgpu';
   *
   * const controller = new AbortController();
   * const engine = await LlamaEngine.load(
   *   'https://huggingface.co/bartowski/Llama-3.2-1B-Instruct-GGUF/resolve/main/Llama-3.2-1B-Instruct-Q4_K_M.gguf',
   *   {
   *     signal: controller.signal,
   *     onProgress: (p) => console.log(p.phase, `${(100 * p.loadedBytes / p.totalBytes).toFixed(1)}%`),
   *   },
   * );
   * console.log(engine.info.model.contextSize, engine.info.features);
   * ```
   */
  static load(source: ModelSource, options?: LoadOptions): Promise<LlamaEngine>;

  /** Whether WebGPU and an adapter are available here (never rejects). */
  static isSupported(): Promise<boolean>;

  /**
   * Whether every shard of a URL source is complete in the persistent cache, so a load works
   * offline. Never touches the network; false for Files and where the cache is unavailable.
   * Relative URLs resolve against the page here (and against the worker script in a worker-mode
   * load), so pass absolute URLs.
   * @throws {LlamaError} `INVALID_ARGUMENT` or `BAD_SPLIT` for a malformed source
   */
  static hasModelInCache(source: ModelSource): Promise<boolean>;

  /**
   * Deletes every shard of a URL source from the persistent cache, complete or partial.
   * @returns true when at least one entry was removed
   * @throws {LlamaError} `INVALID_ARGUMENT` or `BAD_SPLIT` for a malformed source
   */
  static deleteModelFromCache(source: ModelSource): Promise<boolean>;

  /**
   * Low-level generation from a prompt string (tokenized with BOS when the model uses one, no chat
   * template) or token ids: one `{id, text}` per token. Breaking out of the loop stops the
   * generation; an aborted `signal` makes the next iteration throw `ABORTED`.
   *
   * @example
   * ```ts
   * for await (const { text } of engine.generate('Once upon a time', { max_tokens: 32, temperature: 0 })) {
   *   out.textContent += text;
   * }
   * ```
   */
  generate(prompt: string | readonly number[] | Uint32Array, options?: GenerateOptions): AsyncIterable<GeneratedToken>;

  /** Token ids of `text` (with BOS when the model uses one, unless `addBos: false`). */
  tokenize(text: string, options?: TokenizeOptions): Promise<number[]>;

  /** Text of token ids (control tokens only with `renderSpecial: true`). */
  detokenize(ids: readonly number[] | Uint32Array, options?: DetokenizeOptions): Promise<string>;

  /**
   * Ends the running generation early, normally: it resolves (or its stream ends) with
   * `finish_reason: 'abort'` and the text so far. Requests still queued behind it run.
   */
  interrupt(): void;

  /** Forgets the conversation in the KV cache (after the running request); the next request prefills from scratch. */
  resetChat(): Promise<void>;

  /** Frees the GPU memory and terminates the worker. The engine cannot be used afterwards. */
  /**
   * Loads the model again on a new GPU device — after a `DEVICE_LOST` error, or with changed
   * options such as `contextSize`. Reads from the cache when the model was cached; the
   * conversation in the KV cache is forgotten.
   */
  reload(options?: Partial<Pick<LoadOptions, 'contextSize' | 'precision' | 'cache'>>): Promise<EngineInfo>;
  unload(): Promise<void>;
}

export default LlamaEngine;
