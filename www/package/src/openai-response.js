// @ts-check
// OpenAI's response shapes, built from the engine's generation steps and summary: whole
// responses, streamed chunks, usage with the engine's timings, and logprobs.

/** @typedef {import('./tools.js').ChatCompletionMessageToolCall} ChatCompletionMessageToolCall */
/** @typedef {import('./openai-request.js').ChatCompletionRequest} ChatCompletionRequest */
/** @typedef {import('./openai-request.js').ChatCompletionRequestStreaming} ChatCompletionRequestStreaming */
/** @typedef {import('./openai-request.js').ChatCompletionRequestNonStreaming} ChatCompletionRequestNonStreaming */
/** @typedef {import('./openai-request.js').CompletionRequest} CompletionRequest */
/** @typedef {import('./openai-request.js').CompletionRequestStreaming} CompletionRequestStreaming */
/** @typedef {import('./openai-request.js').CompletionRequestNonStreaming} CompletionRequestNonStreaming */

/**
 * Why a generation ended: `'stop'` — an end-of-turn token or a `stop` string; `'length'` —
 * `max_tokens` or the end of the context; `'abort'` — `engine.interrupt()` (an aborted `signal`
 * rejects instead); `'tool_calls'` — the reply is a tool call.
 * @typedef {'stop' | 'length' | 'abort' | 'tool_calls'} FinishReason
 */

/**
 * One alternative token in `top_logprobs`.
 * @typedef {object} TopLogprob
 * @property {string} token The token's text.
 * @property {number} logprob Natural-log probability.
 * @property {number[]} bytes UTF-8 bytes of `token`.
 */

/**
 * The log-probability of one generated token: a {@link TopLogprob} with the alternatives.
 * @typedef {object} TokenLogprob
 * @property {string} token
 * @property {number} logprob
 * @property {number[]} bytes
 * @property {TopLogprob[]} top_logprobs The most likely tokens at this position, most likely first
 *   (`top_logprobs` of them).
 */

/**
 * The `logprobs` of a choice (or of a chunk): one entry per generated token.
 * @typedef {object} ChoiceLogprobs
 * @property {TokenLogprob[]} content
 */

/**
 * Speed measurements of one request (non-standard).
 * @typedef {object} UsageExtra
 * @property {number} prefill_tokens_per_s Prompt tokens processed per second (the tokens not served from the KV cache).
 * @property {number} decode_tokens_per_s Generated tokens per second after the first.
 * @property {number} time_to_first_token_ms Milliseconds from the start of the request's turn to the first token.
 * @property {number} [mask_ms_per_token] With structured output: milliseconds per token spent computing the grammar's token mask.
 * @property {number} [grammar_compile_ms] With structured output: milliseconds compiling the schema or grammar.
 */

/**
 * Token counts of one request.
 * @typedef {object} CompletionUsage
 * @property {number} prompt_tokens
 * @property {number} completion_tokens
 * @property {number} total_tokens `prompt_tokens + completion_tokens`.
 * @property {PromptTokensDetails} prompt_tokens_details
 * @property {UsageExtra} extra
 */

/**
 * @typedef {object} PromptTokensDetails
 * @property {number} cached_tokens Prompt tokens whose keys and values were reused from the previous request.
 */

/**
 * The assistant's message in a {@link ChatCompletion}.
 * @typedef {object} ChatCompletionMessage
 * @property {'assistant'} role
 * @property {string | null} content The text, or null when the reply is a tool call.
 * @property {ChatCompletionMessageToolCall[]} [tool_calls] The call the model made
 *   (`finish_reason: 'tool_calls'`), when it made one.
 */

/**
 * The one choice of a {@link ChatCompletion}.
 * @typedef {object} ChatCompletionChoice
 * @property {number} index
 * @property {ChatCompletionMessage} message
 * @property {ChoiceLogprobs | null} logprobs With `logprobs: true`, one entry per generated token; else null.
 * @property {FinishReason} finish_reason
 */

/**
 * The response of a non-streaming chat request.
 * @typedef {object} ChatCompletion
 * @property {string} id `chatcmpl-…`, unique per request.
 * @property {'chat.completion'} object
 * @property {number} created Unix time in seconds.
 * @property {string} model The request's `model`, or the first shard's URL or file name.
 * @property {ChatCompletionChoice[]} choices Exactly one choice.
 * @property {CompletionUsage} usage
 */

/**
 * A piece of a tool call in a streamed delta.
 * @typedef {object} ChatCompletionToolCallDelta
 * @property {number} index
 * @property {string} [id]
 * @property {'function'} [type]
 * @property {{name?: string, arguments: string}} function
 */

/**
 * The change a chunk makes to the assistant's message.
 * @typedef {object} ChatCompletionChunkDelta
 * @property {'assistant'} [role] `'assistant'` in the first chunk only.
 * @property {string} [content] New text (may be empty); absent in the final chunk.
 * @property {ChatCompletionToolCallDelta[]} [tool_calls] A tool call as it is generated: the first
 *   delta has `id`, `type` and `function.name` (with `arguments: ''`), later ones append to
 *   `function.arguments`. `index` is always 0.
 */

/**
 * The choice of a {@link ChatCompletionChunk}.
 * @typedef {object} ChatCompletionChunkChoice
 * @property {number} index
 * @property {ChatCompletionChunkDelta} delta
 * @property {ChoiceLogprobs | null} logprobs With `logprobs: true`, the entry of this chunk's token
 *   (null in the role and final chunks); else null.
 * @property {FinishReason | null} finish_reason Null until the final chunk with choices.
 */

/**
 * One streamed piece of a chat response. The stream is: a chunk with `delta.role`, chunks with
 * `delta.content`, a chunk with `finish_reason` and an empty `delta`, then — with
 * `stream_options.include_usage` — one chunk with `choices: []` and `usage`.
 * @typedef {object} ChatCompletionChunk
 * @property {string} id The same for every chunk of a response.
 * @property {'chat.completion.chunk'} object
 * @property {number} created
 * @property {string} model
 * @property {ChatCompletionChunkChoice[]} choices One choice, or none in the usage chunk.
 * @property {CompletionUsage} [usage] Only on the last chunk, with `stream_options.include_usage`.
 */

/**
 * The one choice of a {@link Completion}.
 * @typedef {object} CompletionChoice
 * @property {number} index
 * @property {string} text The generated text.
 * @property {ChoiceLogprobs | null} logprobs
 * @property {FinishReason} finish_reason
 */

/**
 * The response of a non-streaming completion request.
 * @typedef {object} Completion
 * @property {string} id `cmpl-…`, unique per request.
 * @property {'text_completion'} object
 * @property {number} created
 * @property {string} model
 * @property {CompletionChoice[]} choices
 * @property {CompletionUsage} usage
 */

/**
 * The choice of a {@link CompletionChunk}.
 * @typedef {object} CompletionChunkChoice
 * @property {number} index
 * @property {string} text New text (empty in the final chunk).
 * @property {ChoiceLogprobs | null} logprobs
 * @property {FinishReason | null} finish_reason Null until the final chunk with choices.
 */

/**
 * One streamed piece of a completion (`object: 'text_completion'`, like the full response):
 * chunks with `text`, a chunk with `finish_reason`, then — with `stream_options.include_usage`
 * — one chunk with `choices: []` and `usage`.
 * @typedef {object} CompletionChunk
 * @property {string} id
 * @property {'text_completion'} object
 * @property {number} created
 * @property {string} model
 * @property {CompletionChunkChoice[]} choices
 * @property {CompletionUsage} [usage] Only on the last chunk, with `stream_options.include_usage`.
 */

/**
 * One step of `engine.generate()`.
 * @typedef {object} GeneratedToken
 * @property {number | null} id The sampled token id; null for text released without a new token
 *   (e.g. held back at the end).
 * @property {string} text Text that became final with this step; empty mid-character or while a
 *   `stop` string may be forming.
 */

/**
 * `engine.chat.completions`.
 * @typedef {object} ChatCompletions
 * @property {{
 *   (request: ChatCompletionRequestStreaming): Promise<AsyncIterable<ChatCompletionChunk>>;
 *   (request: ChatCompletionRequestNonStreaming): Promise<ChatCompletion>;
 *   (request: ChatCompletionRequest): Promise<ChatCompletion | AsyncIterable<ChatCompletionChunk>>;
 * }} create Answers a conversation (OpenAI Chat Completions shapes). Requests run one at a time,
 *   in order. The KV cache keeps the last conversation: a follow-up that repeats it and adds a
 *   turn only prefills the new tokens. Throws (rejects with) a LlamaError: `INVALID_PROMPT`,
 *   `PROMPT_TOO_LONG`, `INVALID_SAMPLING_PARAMS`, `INVALID_ARGUMENT`, `TEMPLATE_ERROR`,
 *   `ABORTED`, `NOT_LOADED`, GPU errors. In worker mode a streaming request's errors surface
 *   when iterating.
 *
 *   ```ts
 *   const reply = await engine.chat.completions.create({
 *     messages: [{ role: 'user', content: 'Why is the sky blue?' }],
 *     max_tokens: 128,
 *   });
 *   console.log(reply.choices[0].message.content, reply.usage.extra.decode_tokens_per_s);
 *
 *   const stream = await engine.chat.completions.create({
 *     messages: [{ role: 'user', content: 'Tell me a story.' }],
 *     stream: true,
 *     stream_options: { include_usage: true },
 *   });
 *   for await (const chunk of stream) out.textContent += chunk.choices[0]?.delta.content ?? '';
 *   ```
 */

/**
 * `engine.completions`.
 * @typedef {object} Completions
 * @property {{
 *   (request: CompletionRequestStreaming): Promise<AsyncIterable<CompletionChunk>>;
 *   (request: CompletionRequestNonStreaming): Promise<Completion>;
 *   (request: CompletionRequest): Promise<Completion | AsyncIterable<CompletionChunk>>;
 * }} create Continues a prompt as raw text (no chat template), OpenAI Completions shapes.
 *
 *   ```ts
 *   const c = await engine.completions.create({ prompt: 'The capital of France is', max_tokens: 8, temperature: 0 });
 *   console.log(c.choices[0].text);
 *   ```
 */

/**
 * One step of the engine's generation loop: a token and the text that became final with it.
 * @typedef {object} GenerationStep
 * @property {number | null} id
 * @property {string} text
 * @property {number} [logprob]
 * @property {Array<{text: string, logprob: number}>} [topLogprobs]
 */

/**
 * How a generation went, when it is over.
 * @typedef {object} GenerationSummary
 * @property {'stop' | 'length' | 'abort'} finishReason
 * @property {number} promptTokens
 * @property {number} completionTokens
 * @property {number} cachedTokens
 * @property {number} prefillTokens
 * @property {UsageExtra} timings
 */

let idCounter = 0;

/**
 * A fresh response or call id: `chatcmpl-…`, `cmpl-…`, `call-…`.
 * @param {string} prefix
 */
export const newId = (prefix) => `${prefix}-${Date.now().toString(36)}${(idCounter++).toString(36)}`;

/**
 * The usage of a finished generation.
 * @param {GenerationSummary} summary
 * @returns {CompletionUsage}
 */
function usageOf(summary) {
  return {
    prompt_tokens: summary.promptTokens,
    completion_tokens: summary.completionTokens,
    total_tokens: summary.promptTokens + summary.completionTokens,
    prompt_tokens_details: { cached_tokens: summary.cachedTokens },
    extra: summary.timings,
  };
}

/**
 * A step's logprobs entry, or null when the request asked for none.
 * @param {GenerationStep} step
 * @param {(id: number) => string} tokenText the text of one token
 * @returns {TokenLogprob | null}
 */
export function logprobsEntry(step, tokenText) {
  if (step.logprob === undefined) return null;
  /** @param {string} t */
  const bytes = (t) => Array.from(new TextEncoder().encode(t));
  const text = step.id === null ? '' : tokenText(step.id);
  return {
    token: text,
    logprob: step.logprob,
    bytes: bytes(text),
    top_logprobs: /** @type {NonNullable<GenerationStep['topLogprobs']>} */ (step.topLogprobs).map((t) => ({ token: t.text, logprob: t.logprob, bytes: bytes(t.text) })),
  };
}

/**
 * The envelope every object of one response shares: its id, creation time and model, for a chat
 * (`'chat'`) or text (`'text'`) completion.
 */
export class ResponseEnvelope {
  /**
   * @param {'chat' | 'text'} kind
   * @param {string} model
   */
  constructor(kind, model) {
    this.kind = kind;
    this.id = newId(kind === 'chat' ? 'chatcmpl' : 'cmpl');
    this.created = Math.floor(Date.now() / 1000);
    this.model = model;
  }

  /**
   * A streamed chunk with one choice (fields not given are null).
   * @param {object} choice
   * @param {object} [extra] more top-level fields
   */
  chunk(choice, extra = {}) {
    return {
      id: this.id,
      object: this.kind === 'chat' ? 'chat.completion.chunk' : 'text_completion',
      created: this.created,
      model: this.model,
      choices: [{ index: 0, logprobs: null, finish_reason: null, ...choice }],
      ...extra,
    };
  }

  /**
   * The last chunk of a stream with `include_usage`: no choices, the usage.
   * @param {GenerationSummary} summary
   */
  usageChunk(summary) {
    return { ...this.chunk({}), choices: [], usage: usageOf(summary) };
  }

  /**
   * The whole response, with its one choice.
   * @param {object} choice
   * @param {GenerationSummary} summary
   */
  response(choice, summary) {
    return {
      id: this.id,
      object: this.kind === 'chat' ? 'chat.completion' : 'text_completion',
      created: this.created,
      model: this.model,
      choices: [choice],
      usage: usageOf(summary),
    };
  }
}
