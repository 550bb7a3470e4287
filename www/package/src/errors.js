// @ts-check
// Every failure the package reports is a LlamaError: an Error with a stable `code` that apps can
// switch on, and a message that says what went wrong and where.

/**
 * The stable error codes of {@link LlamaError}, shared by the wasm engine (see `src/error.rs`) and
 * the JS layers.
 *
 * | code | meaning |
 * |---|---|
 * | `NO_WEBGPU` | no WebGPU, no adapter, no device, or `precision: 'f16'` without shader-f16 |
 * | `BAD_GGUF` | the file is not a valid GGUF (or a load failed for an unclassified reason) |
 * | `BAD_SPLIT` | a shard of a split model is missing, repeated, foreign or misnamed |
 * | `UNSUPPORTED_TENSOR_TYPE` | a tensor uses a quantization this engine cannot run |
 * | `UNSUPPORTED_ARCHITECTURE` | `general.architecture` is none of `llama`, `qwen2`, `qwen3`, `gemma3`, `phi3` |
 * | `BAD_MODEL` | tensors or hyperparameters do not form a valid Llama model |
 * | `OUT_OF_MEMORY` | the GPU could not allocate the weights or the KV cache |
 * | `DEVICE_LOST` | the GPU device was lost (driver reset, tab in the background too long, ...) |
 * | `GPU_ERROR` | another WebGPU failure, or the engine worker died |
 * | `NETWORK_ERROR` | HTTP error, CORS, an unreachable shard, or a download that kept failing |
 * | `INTEGRITY_ERROR` | a shard's SHA-256 differs from the `sha256` load option |
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
export const ErrorCode = Object.freeze({
  NO_WEBGPU: 'NO_WEBGPU',
  BAD_GGUF: 'BAD_GGUF',
  BAD_SPLIT: 'BAD_SPLIT',
  UNSUPPORTED_TENSOR_TYPE: 'UNSUPPORTED_TENSOR_TYPE',
  UNSUPPORTED_ARCHITECTURE: 'UNSUPPORTED_ARCHITECTURE',
  BAD_MODEL: 'BAD_MODEL',
  OUT_OF_MEMORY: 'OUT_OF_MEMORY',
  DEVICE_LOST: 'DEVICE_LOST',
  GPU_ERROR: 'GPU_ERROR',
  NETWORK_ERROR: 'NETWORK_ERROR',
  INTEGRITY_ERROR: 'INTEGRITY_ERROR',
  ABORTED: 'ABORTED',
  CONTEXT_FULL: 'CONTEXT_FULL',
  PROMPT_TOO_LONG: 'PROMPT_TOO_LONG',
  INVALID_PROMPT: 'INVALID_PROMPT',
  BAD_TOKEN: 'BAD_TOKEN',
  TOKENIZER_ERROR: 'TOKENIZER_ERROR',
  TEMPLATE_ERROR: 'TEMPLATE_ERROR',
  INVALID_SAMPLING_PARAMS: 'INVALID_SAMPLING_PARAMS',
  INVALID_ARGUMENT: 'INVALID_ARGUMENT',
  /** `response_format.json_schema.schema` (or a tool's `parameters`) is not valid JSON Schema. */
  INVALID_SCHEMA: 'INVALID_SCHEMA',
  /** The schema is valid but uses a keyword the engine cannot enforce (it never ignores one). */
  UNSUPPORTED_SCHEMA: 'UNSUPPORTED_SCHEMA',
  /** A `grammar` (Lark or GBNF) or regex does not compile. */
  INVALID_GRAMMAR: 'INVALID_GRAMMAR',
  /** Constrained decoding reached a state where no token is allowed. */
  CONSTRAINT_FAILED: 'CONSTRAINT_FAILED',
  NOT_LOADED: 'NOT_LOADED',
  IO_ERROR: 'IO_ERROR',
});

/**
 * Every failure the package reports, whether it happened in the page, the worker or the wasm
 * engine: an `Error` with a machine-readable {@link ErrorCode} to switch on and a message that
 * names the URL, tensor or parameter involved.
 */
export class LlamaError extends Error {
  /**
   * Always `'LlamaError'`.
   * @type {'LlamaError'}
   */
  name = 'LlamaError';

  /**
   * @param {ErrorCode} code one of {@link ErrorCode}
   * @param {string} message what went wrong, naming the URL, tensor or parameter involved
   * @param {LlamaErrorDetails} [details] extra facts, e.g. `{url, status}` for network errors
   */
  constructor(code, message, details = undefined) {
    super(message);
    /** What kind of failure this is. */
    this.code = code;
    if (details !== undefined) {
      /** Extra facts, present only for some errors. */
      this.details = details;
    }
  }
}

/**
 * Wraps anything thrown (a wasm error with `code`, a DOMException, a string) as a LlamaError.
 * @param {any} e
 * @param {ErrorCode} [fallbackCode]
 * @returns {LlamaError}
 */
export function toLlamaError(e, fallbackCode = ErrorCode.GPU_ERROR) {
  if (e instanceof LlamaError) return e;
  if (e && e.name === 'AbortError') return new LlamaError(ErrorCode.ABORTED, e.message || 'aborted');
  if (e && typeof e.code === 'string' && e.message) return new LlamaError(e.code, e.message, e.details);
  return new LlamaError(fallbackCode, e && e.message ? e.message : String(e));
}

/**
 * The error an aborted signal throws: its reason when that is a LlamaError, else ABORTED.
 * @param {AbortSignal | null | undefined} signal
 * @returns {LlamaError}
 */
export function abortError(signal) {
  const r = signal && signal.reason;
  if (r instanceof LlamaError) return r;
  return new LlamaError(ErrorCode.ABORTED, r && r.message ? `aborted: ${r.message}` : 'aborted');
}

// The types of the codes and details. (Typedefs go last: tsc would copy them into the doc of the
// declaration that follows them.)

/**
 * One of the {@link ErrorCode} strings.
 * @typedef {(typeof ErrorCode)[keyof typeof ErrorCode]} ErrorCode
 */

/**
 * Extra facts attached to some errors. Network errors carry `url` and, when the server answered,
 * `status`; integrity errors carry `url` (or `name` for Files), `expected` and `actual` hashes.
 * @typedef {LlamaErrorFacts & {[key: string]: unknown}} LlamaErrorDetails
 */

/**
 * The named fields of {@link LlamaErrorDetails}.
 * @typedef {object} LlamaErrorFacts
 * @property {string} [url] The URL involved (network and integrity errors).
 * @property {number} [status] The HTTP status, when the server answered (network errors).
 * @property {string} [name] The shard's file name (integrity errors).
 * @property {string} [expected] The expected SHA-256, lowercase hex (integrity errors).
 * @property {string} [actual] The SHA-256 of the bytes received, lowercase hex (integrity errors).
 * @property {string} [what] `OUT_OF_MEMORY`: the buffer that could not be created, e.g. `"buffer 'k cache 0'"`.
 * @property {number} [requestBytes] `OUT_OF_MEMORY`: that buffer's size in bytes.
 * @property {string | null} [overLimit] `OUT_OF_MEMORY`: the device limit the buffer is over
 *   (`'maxBufferSize'` or `'maxStorageBufferBindingSize'`), or null when the device refused it
 *   within its limits.
 * @property {string | null} [deviceMessage] `OUT_OF_MEMORY`: the browser's own message when the device refused.
 * @property {number} [allocatedBytes] `OUT_OF_MEMORY`: bytes of the model's buffers created before
 *   the failure; when the device refused, at least this much GPU memory is available.
 * @property {number | null} [neededBytes] `OUT_OF_MEMORY`: what the model needs in all (weights +
 *   KV cache + activations) at `contextSize`; a lower bound when `neededIsLowerBound` (a split
 *   model that failed before its last shard's header).
 * @property {boolean} [neededIsLowerBound]
 * @property {number | null} [weightsBytes]
 * @property {number | null} [kvCacheBytes]
 * @property {number | null} [activationsBytes]
 * @property {number | null} [contextSize]
 * @property {number | null} [maxContextSize] `OUT_OF_MEMORY`: the largest context whose KV cache
 *   layers fit the device's limits.
 * @property {number} [maxBufferSize]
 * @property {number} [maxStorageBufferBindingSize]
 */
