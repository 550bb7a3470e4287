// Every failure the package reports is a LlamaError: an Error with a stable `code` that apps can
// switch on, and a message that says what went wrong and where.

/** Error codes, shared by the wasm engine (see `src/error.rs`) and the JS layers. */
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
  INVALID_SCHEMA: 'INVALID_SCHEMA',
  UNSUPPORTED_SCHEMA: 'UNSUPPORTED_SCHEMA',
  INVALID_GRAMMAR: 'INVALID_GRAMMAR',
  CONSTRAINT_FAILED: 'CONSTRAINT_FAILED',
  NOT_LOADED: 'NOT_LOADED',
  IO_ERROR: 'IO_ERROR',
});

/** An Error with a machine-readable `code` (one of {@link ErrorCode}) and optional details. */
export class LlamaError extends Error {
  /**
   * @param {string} code one of ErrorCode
   * @param {string} message what went wrong, naming the URL, tensor or parameter involved
   * @param {object} [details] extra facts, e.g. `{url, status}` for network errors
   */
  constructor(code, message, details = undefined) {
    super(message);
    this.name = 'LlamaError';
    this.code = code;
    if (details !== undefined) this.details = details;
  }
}

/** Wraps anything thrown (a wasm error with `code`, a DOMException, a string) as a LlamaError. */
export function toLlamaError(e, fallbackCode = ErrorCode.GPU_ERROR) {
  if (e instanceof LlamaError) return e;
  if (e && e.name === 'AbortError') return new LlamaError(ErrorCode.ABORTED, e.message || 'aborted');
  if (e && typeof e.code === 'string' && e.message) return new LlamaError(e.code, e.message, e.details);
  return new LlamaError(fallbackCode, e && e.message ? e.message : String(e));
}

/** The error an aborted signal throws: its reason when that is an Error, else ABORTED. */
export function abortError(signal) {
  const r = signal && signal.reason;
  if (r instanceof LlamaError) return r;
  return new LlamaError(ErrorCode.ABORTED, r && r.message ? `aborted: ${r.message}` : 'aborted');
}
