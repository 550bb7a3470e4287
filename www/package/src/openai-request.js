// @ts-check
// OpenAI's request shapes and what the wasm engine makes of them: the sampling, stopping and
// structured-output fields → the engine's parameters (JSON, snake_case); chat `messages` → what
// the model's chat template renders. Every bad field is a LlamaError before generation starts.

import { ErrorCode, LlamaError } from './errors.js';
import { templateToolCalls } from './tools.js';

/** @typedef {import('./tools.js').ChatCompletionTool} ChatCompletionTool */
/** @typedef {import('./tools.js').ChatCompletionToolChoiceOption} ChatCompletionToolChoiceOption */
/** @typedef {import('./tools.js').ChatCompletionMessageToolCall} ChatCompletionMessageToolCall */

/**
 * Sampling and stopping fields shared by chat completions, completions and `generate()`.
 * Sampling runs penalties → logit bias → top-k → top-p → min-p → temperature → seeded draw.
 * @typedef {object} SamplingOptions
 * @property {number | null} [max_tokens] Most tokens to generate (default, and at most: what is left of the context).
 * @property {number | null} [max_completion_tokens] OpenAI's newer name for `max_tokens`; `max_tokens` wins when both are set.
 * @property {number | null} [temperature] 0 is greedy (the most likely token every time). In [0, 100].
 * @property {number | null} [top_p] Nucleus sampling: keep the most likely tokens whose probabilities add up to this. In (0, 1].
 * @property {number | null} [top_k] Keep only the k most likely tokens (0: all). In [0, nVocab].
 * @property {number | null} [min_p] Drop tokens less likely than `min_p` × the most likely one. In [0, 1].
 * @property {number | null} [frequency_penalty] Penalizes tokens by how often they already appeared. In [-2, 2].
 * @property {number | null} [presence_penalty] Penalizes tokens that already appeared. In [-2, 2].
 * @property {number | null} [repetition_penalty] llama.cpp's repeat penalty (1: off). Greater than 0, at most 100.
 * @property {number | null} [seed] Non-negative integer for reproducible sampling (default: random).
 * @property {string | readonly string[] | null} [stop] Text that ends the generation (not included
 *   in the output): one string or several.
 * @property {Record<string, number> | null} [logit_bias] Bias added to the logits of token ids: `{128009: -100}`. `-100` or less (or `-Infinity`) bans the token, as in OpenAI's API; `Infinity` is rejected.
 * @property {boolean} [ignore_eos] Keep generating past the model's end-of-turn tokens.
 * @property {ResponseFormat | null} [response_format] Structured output, enforced token by token (the
 *   output always matches; a schema or grammar that cannot be enforced is an error before
 *   generation, never a silent fallback): `{type: 'json_object'}`, `{type: 'json_schema',
 *   json_schema: {name, schema, strict}}`, `{type: 'grammar', grammar}` (Lark or GBNF, as WebLLM
 *   takes it) or `{type: 'regex', pattern}`.
 * @property {string | null} [grammar] A grammar the output must match: Lark (llguidance's dialect,
 *   e.g. `start: /[0-9]+/`) or GBNF (`root ::= ...`, llama.cpp's format). The same as
 *   `response_format: {type: 'grammar'}`.
 * @property {AbortSignal} [signal] Cancels the request: the promise (or the stream's next
 *   iteration) rejects with `ABORTED`. The KV cache is kept. Use `engine.interrupt()` to end a
 *   request normally instead.
 */

/**
 * What `response_format` accepts.
 * @typedef {{type: 'text'} | {type: 'json_object'} | {type: 'json_schema', json_schema: JsonSchemaFormat}
 *   | {type: 'grammar', grammar: string} | {type: 'regex', pattern: string}} ResponseFormat
 */

/**
 * The `json_schema` of a `{type: 'json_schema'}` {@link ResponseFormat}.
 * @typedef {object} JsonSchemaFormat
 * @property {string} [name]
 * @property {string} [description]
 * @property {Record<string, unknown> | boolean} schema A JSON Schema (draft 2020-12 keywords; see
 *   README for what is enforced).
 * @property {boolean | null} [strict] Accepted for compatibility; the schema is always enforced strictly.
 */

/**
 * Fields shared by chat and text completion requests.
 * @typedef {SamplingOptions & CompletionFields} CompletionRequestBase
 */

/**
 * The fields {@link CompletionRequestBase} adds to the sampling options.
 * @typedef {object} CompletionFields
 * @property {string | null} [model] Echoed in the response's `model` (default: the first shard's URL or file name).
 * @property {boolean | null} [logprobs] Return the log-probability of each generated token.
 * @property {number | null} [top_logprobs] Also return the most likely alternatives at each
 *   position (0–20); needs `logprobs: true`.
 * @property {boolean | null} [stream] Stream chunks as tokens are generated instead of one response at the end.
 * @property {{include_usage?: boolean} | null} [stream_options] With `stream: true`: `include_usage`
 *   adds a last chunk with `usage` and no choices.
 * @property {1} [n] Number of choices: only 1 is supported.
 */

/**
 * A text part of a message's content (the only kind a text model accepts).
 * @typedef {object} ChatCompletionContentPartText
 * @property {'text'} type
 * @property {string} text
 */

/**
 * The roles a chat message can have.
 * @typedef {'system' | 'user' | 'assistant' | 'tool'} ChatRole
 */

/**
 * One message of a conversation; `role` and `content` are what the chat template renders.
 * @typedef {object} ChatCompletionMessageParam
 * @property {ChatRole} role
 * @property {string | readonly ChatCompletionContentPartText[] | null} content A string, or text
 *   parts, which are concatenated (null for an assistant turn with `tool_calls`).
 * @property {readonly ChatCompletionMessageToolCall[]} [tool_calls] An assistant turn's tool calls,
 *   as a response returned them.
 * @property {string} [tool_call_id] A `tool` message: the `id` of the call it answers.
 * @property {string} [name] A `tool` message: the function's name (optional).
 */

/**
 * A request to `engine.chat.completions.create`.
 * @typedef {CompletionRequestBase & ChatFields} ChatCompletionRequest
 */

/**
 * The fields of a {@link ChatCompletionRequest} beyond {@link CompletionRequestBase}.
 * @typedef {object} ChatFields
 * @property {readonly ChatCompletionMessageParam[]} messages The conversation so far (non-empty),
 *   rendered with the model's chat template.
 * @property {readonly ChatCompletionTool[] | null} [tools] Functions the model may call; rendered by
 *   the model's chat template (e.g. Llama 3.1's).
 * @property {ChatCompletionToolChoiceOption | null} [tool_choice] Default `'auto'` with tools.
 */

/**
 * A chat request with `stream: true`.
 * @typedef {ChatCompletionRequest & {stream: true}} ChatCompletionRequestStreaming
 */

/**
 * A chat request without streaming.
 * @typedef {ChatCompletionRequest & {stream?: false | null}} ChatCompletionRequestNonStreaming
 */

/**
 * A request to `engine.completions.create`: raw text continuation, no chat template.
 * @typedef {CompletionRequestBase & PromptField} CompletionRequest
 */

/**
 * The prompt of a {@link CompletionRequest}.
 * @typedef {object} PromptField
 * @property {string | readonly number[]} prompt Text (tokenized with BOS when the model uses one) or
 *   token ids (used as they are).
 */

/**
 * A completion request with `stream: true`.
 * @typedef {CompletionRequest & {stream: true}} CompletionRequestStreaming
 */

/**
 * A completion request without streaming.
 * @typedef {CompletionRequest & {stream?: false | null}} CompletionRequestNonStreaming
 */

/**
 * Options of `engine.generate()`: the sampling fields and `signal`.
 * @typedef {SamplingOptions} GenerateOptions
 */

/**
 * OpenAI `response_format` (`json_object`, `json_schema`, WebLLM's `grammar`) or the `grammar`
 * extension field → the wasm engine's `constraint`, or null. The engine compiles it before
 * generating, so a bad schema or grammar rejects the request with INVALID_SCHEMA,
 * UNSUPPORTED_SCHEMA or INVALID_GRAMMAR before any token.
 * @param {any} req
 * @returns {object | null}
 */
function constraintOf(req) {
  /** @param {string} msg */
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

/**
 * OpenAI request fields → the wasm engine's parameters (JSON, snake_case).
 * @param {any} req a request, or generate()'s options
 * @param {{contextSize: number, nVocab: number}} model
 * @param {number} promptTokens
 * @returns {Record<string, any>}
 * @throws {LlamaError} INVALID_SAMPLING_PARAMS, INVALID_ARGUMENT
 */
export function samplingParams(req, model, promptTokens) {
  /** @param {string} name @param {unknown} v @param {number} lo @param {number} hi */
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
  const room = model.contextSize - promptTokens;
  const maxTokens = num('max_tokens', req.max_tokens ?? req.max_completion_tokens, 0, Number.MAX_SAFE_INTEGER) ?? room;
  /** @type {Record<string, any>} */
  const p = {
    max_tokens: Math.min(maxTokens, room),
    stop: req.stop === undefined || req.stop === null ? [] : Array.isArray(req.stop) ? req.stop : [req.stop],
    ignore_eos: !!req.ignore_eos,
  };
  const t = num('temperature', req.temperature, 0, 100);
  if (t !== undefined) p.temperature = t;
  const topP = num('top_p', req.top_p, Number.MIN_VALUE, 1);
  if (topP !== undefined) p.top_p = topP;
  const topK = num('top_k', req.top_k, 0, model.nVocab);
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
      if (!Number.isInteger(n) || n < 0 || n >= model.nVocab || typeof bias !== 'number' || Number.isNaN(bias)) {
        throw new LlamaError(ErrorCode.INVALID_SAMPLING_PARAMS, `logit_bias entry ${id}: ${bias} is not a token id of this model with a numeric bias`);
      }
      if (bias === Infinity) {
        throw new LlamaError(
          ErrorCode.INVALID_SAMPLING_PARAMS,
          `logit_bias for token ${n}: Infinity is not allowed; a large finite bias such as 100 favours the token`,
        );
      }
      // JSON.stringify(-Infinity) is null, so a ban travels as the word the engine reads as -inf.
      return [n, bias === -Infinity ? '-inf' : bias];
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
 * OpenAI chat messages → what the chat template renders: text parts joined, tool-call arguments
 * as objects.
 * @param {unknown} messages
 * @returns {object[]}
 * @throws {LlamaError} INVALID_PROMPT
 */
export function templateMessages(messages) {
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
    /** @type {Record<string, unknown>} */
    const out = { role: m.role, content };
    if (m.tool_calls !== undefined && m.tool_calls !== null) out.tool_calls = templateToolCalls(m.tool_calls, i);
    if (m.tool_call_id !== undefined) out.tool_call_id = String(m.tool_call_id);
    if (typeof m.name === 'string') out.name = m.name;
    return out;
  });
}
