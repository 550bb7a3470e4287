// @ts-check
// Tool calling in OpenAI's shapes: `tools` and `tool_choice` → the constraint a call must match;
// the reply's text → a tool call (whole, or as streamed deltas); earlier calls in `messages` →
// what the chat template renders. Calls use Llama 3.1's format, `{"name": ..., "parameters": {...}}`.

import { ErrorCode, LlamaError } from './errors.js';

/**
 * A function the model may call (OpenAI's `tools` entry).
 * @typedef {object} ChatCompletionTool
 * @property {'function'} type
 * @property {ToolFunction} function
 */

/**
 * The function of a {@link ChatCompletionTool}.
 * @typedef {object} ToolFunction
 * @property {string} name
 * @property {string} [description]
 * @property {Record<string, unknown>} [parameters] JSON Schema of the arguments object (default: any object).
 */

/**
 * Which tool the model may call: `'auto'` (a call or a text answer; the default with tools),
 * `'none'` (tools are not shown to the model), `'required'` (some call), or one named function.
 * With `'required'` or a named function the call is constrained to that function's schema;
 * with `'auto'` a reply that starts as a call is constrained too.
 * @typedef {'auto' | 'none' | 'required' | {type: 'function', function: {name: string}}} ChatCompletionToolChoiceOption
 */

/**
 * A tool call the assistant made.
 * @typedef {object} ChatCompletionMessageToolCall
 * @property {string} id `call-…`, unique per call: answer it with a `role: 'tool'` message with this `tool_call_id`.
 * @property {'function'} type
 * @property {ToolCallFunction} function
 */

/**
 * The function of a {@link ChatCompletionMessageToolCall}.
 * @typedef {object} ToolCallFunction
 * @property {string} name
 * @property {string} arguments The arguments as JSON text (valid against the function's `parameters`).
 */

/**
 * The tools of a request that may answer with a call: their names, the constraint the reply must
 * match, and the definitions the chat template renders.
 * @typedef {{names: Set<string>, constraint: object, defs: readonly ChatCompletionTool[]}} ToolSetup
 */

/**
 * What a {@link ToolCallParser} makes of new text: plain content, the start of a call, or more of
 * its arguments.
 * @typedef {{content: string} | {call: {name: string}} | {args: string}} ToolEvent
 */

/**
 * Validates OpenAI `tools` and returns the function definitions by name.
 * @param {unknown} tools
 * @returns {Map<string, ToolFunction>}
 */
function toolFunctions(tools) {
  if (!Array.isArray(tools) || tools.length === 0) {
    throw new LlamaError(ErrorCode.INVALID_ARGUMENT, 'tools must be a non-empty array of {type: "function", function: {name, parameters}}');
  }
  /** @type {Map<string, ToolFunction>} */
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
 * @param {ToolFunction} f
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
 * @param {Map<string, ToolFunction>} byName
 * @param {unknown} choice
 */
function toolConstraint(byName, choice) {
  const calls = [...byName.values()].map(callSchema);
  const anyCall = calls.length === 1 ? calls[0] : { anyOf: calls };
  if (choice === 'required') return { type: 'json_schema', schema: anyCall };
  if (typeof choice === 'object' && /** @type {any} */ (choice)?.type === 'function') {
    const name = /** @type {any} */ (choice).function?.name;
    const f = byName.get(name);
    if (!f) throw new LlamaError(ErrorCode.INVALID_ARGUMENT, `tool_choice names ${JSON.stringify(name)}, which is not in tools`);
    return { type: 'json_schema', schema: callSchema(f) };
  }
  if (choice === 'auto') {
    return { type: 'lark', grammar: `start: call | TEXT\ncall: %json ${JSON.stringify(anyCall)}\nTEXT: /[^{\\s][\\s\\S]*/\n` };
  }
  throw new LlamaError(ErrorCode.INVALID_ARGUMENT, 'tool_choice must be "auto", "none", "required" or {type: "function", function: {name}}');
}

/**
 * The tools of a chat request, or null when the reply cannot be a call (no tools, or
 * `tool_choice: 'none'`, the default without tools).
 * @param {{tools?: unknown, tool_choice?: unknown}} req
 * @returns {ToolSetup | null}
 * @throws {LlamaError} INVALID_ARGUMENT, INVALID_SCHEMA
 */
export function toolSetup(req) {
  const choice = req.tool_choice ?? (req.tools ? 'auto' : 'none');
  if (req.tools !== undefined && req.tools !== null && choice !== 'none') {
    const byName = toolFunctions(req.tools);
    return { names: new Set(byName.keys()), constraint: toolConstraint(byName, choice), defs: /** @type {ChatCompletionTool[]} */ (req.tools) };
  }
  if (choice !== 'none') throw new LlamaError(ErrorCode.INVALID_ARGUMENT, `tool_choice ${JSON.stringify(choice)} needs tools`);
  return null;
}

/**
 * An assistant message's `tool_calls` → what the chat template renders: the arguments as objects.
 * @param {unknown} calls
 * @param {number} i the message's index, for errors
 * @throws {LlamaError} INVALID_PROMPT
 */
export function templateToolCalls(calls, i) {
  if (!Array.isArray(calls)) throw new LlamaError(ErrorCode.INVALID_PROMPT, `messages[${i}].tool_calls must be an array`);
  return calls.map((c, j) => {
    const f = c?.function;
    if (!f || typeof f.name !== 'string') throw new LlamaError(ErrorCode.INVALID_PROMPT, `messages[${i}].tool_calls[${j}] needs function.name`);
    let args = f.arguments ?? {};
    if (typeof args === 'string') {
      try {
        args = JSON.parse(args || '{}');
      } catch (e) {
        throw new LlamaError(ErrorCode.INVALID_PROMPT, `messages[${i}].tool_calls[${j}].function.arguments is not JSON: ${/** @type {Error} */ (e).message}`);
      }
    }
    return { id: c.id, type: 'function', function: { name: f.name, arguments: args } };
  });
}

/**
 * Follows the text of a reply that may be a tool call: `push(text)` as tokens arrive returns the
 * events to stream (`{content}` or `{call: {name}}` then `{args}`), `end()` the rest. A call is
 * recognized when the reply starts with `{"name": "<tool>", "parameters": ` (or "arguments"); the
 * arguments are streamed as they come, holding back trailing `}` that may close the call.
 */
export class ToolCallParser {
  /** @param {Set<string>} names */
  constructor(names) {
    this.names = names;
    this.buf = '';
    /** Undecided (null), plain text, or a call. @type {null | 'text' | 'call'} */
    this.mode = null;
    /** @type {string | null} */
    this.name = null;
    this.args = '';
    this.sentArgs = 0;
  }

  /**
   * @param {string} text
   * @returns {ToolEvent[]}
   */
  push(text) {
    this.buf += text;
    /** @type {ToolEvent[]} */
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
    const held = /** @type {RegExpExecArray} */ (/[\s}]*$/.exec(this.buf))[0].length;
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
   * @param {boolean} [complete]
   * @returns {ToolEvent[]}
   */
  end(complete = true) {
    /** @type {ToolEvent[]} */
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

  /**
   * The finish reason of the reply: a call that ended normally is `tool_calls`.
   * @template {string} F
   * @param {F} finish the generation's own finish reason
   * @returns {F | 'tool_calls'}
   */
  finishReason(finish) {
    return this.mode === 'call' && finish === 'stop' ? 'tool_calls' : finish;
  }

  /**
   * The call, as the `tool_calls` of the assistant's message; after end(), in call mode.
   * @param {string} id the call's id
   * @returns {ChatCompletionMessageToolCall[]}
   */
  toolCalls(id) {
    return [{ id, type: 'function', function: { name: /** @type {string} */ (this.name), arguments: this.args } }];
  }
}

/**
 * Parser events → OpenAI's streamed deltas: the call's id and name first (with empty
 * arguments), then argument pieces; plain text as `content`.
 * @param {ToolEvent[]} events
 * @param {string} id the call's id
 */
export function toolCallDeltas(events, id) {
  return events.map((e) => ('content' in e
    ? { content: e.content }
    : { tool_calls: ['call' in e
      ? { index: 0, id, type: /** @type {const} */ ('function'), function: { name: e.call.name, arguments: '' } }
      : { index: 0, function: { arguments: e.args } }] }));
}
