// Structured output and tool calling through the npm package in headless Chromium (WebGPU on
// SwiftShader, the f32 no-subgroup kernels; llguidance compiled to wasm computes the masks):
// - SmolLM2: `response_format: json_schema` samples at temperature 1.0 all parse and validate
//   (checked here by Ajv, not by the engine), streaming included; GBNF and Lark grammars
//   restrict the output exactly; bad schemas and grammars fail with typed errors before any token.
// - The synthetic Llama-3.1-shaped model (real Llama 3 vocabulary and chat template, random
//   weights): a tool-call round trip — the call (non-streaming and streamed as OpenAI deltas),
//   then a `role: 'tool'` result, then the final answer.
// SwiftShader decodes SmolLM2 at about 1 token/s, so the browser's 8 schema samples use a
// schema with few choices per reply; the native test (tests/constrain.rs) takes 12 of a larger
// one on lavapipe.
// Needs `scripts/build-web` and `cargo build --release` first. Run: node --test tests/web/structured.test.mjs

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import path from 'node:path';
import fsp from 'node:fs/promises';
import * as H from './harness.mjs';

const require = createRequire(path.join(H.REPO_ROOT, 'scripts/package.json'));
const Ajv = require('ajv');

let session; // the test server, browser and page with the package (H.startEngineTest)

before(async () => {
  session = await H.startEngineTest({ scratch: '/m/' });
  execFileSync(H.CLI, ['synth', '-o', path.join(session.dir, 'tiny.gguf'), '--shape', 'tiny', '--type', 'q4_0'], { stdio: 'pipe' });
  await fsp.copyFile(H.DEFAULT_MODEL, path.join(session.dir, 'smol.gguf'));
  const smol = await session.load('__smol', '/m/smol.gguf', { contextSize: 256 });
  assert.ok(!smol.thrown, JSON.stringify(smol.thrown));
  const tiny = await session.load('__tiny', '/m/tiny.gguf', { contextSize: 1024 });
  assert.ok(!tiny.thrown, JSON.stringify(tiny.thrown));
  assert.equal(tiny.info.model.nVocab, 128256, 'the synthetic model has the Llama 3 vocabulary');
});

after(() => session?.close());

// Nested objects in an array in an object, enums, a bounded integer and numbers, kept to a
// few choices per reply so that the samples fit SwiftShader's ~1 s steps (the grammar's forced
// tokens, the keys and punctuation, run with the sampled one before them in one step). The
// native test (tests/constrain.rs) takes 12 samples of a larger schema with strings and patterns.
const PET_SCHEMA = {
  type: 'object',
  properties: {
    pet: { enum: ['cat', 'dog', 'fish'] },
    age: { type: 'integer', minimum: 1, maximum: 9 },
    toys: {
      type: 'array',
      minItems: 1,
      maxItems: 2,
      items: { type: 'object', properties: { kg: { enum: [0.5, 2.5, 10] } }, required: ['kg'], additionalProperties: false },
    },
  },
  required: ['pet', 'age', 'toys'],
  additionalProperties: false,
};
// Eight samples: each is a fresh draw through the whole schema (the grammar, not the seed, keeps it
// valid), and the native test runs more of a larger schema at a fraction of the cost.
const SAMPLES = 8;

test('json_schema: 8 seeded samples at temperature 1.0 all parse and validate (SmolLM2), streamed ones too', async () => {
  const validate = new Ajv({ strict: true }).compile(PET_SCHEMA);
  const t0 = Date.now();
  const r = await session.inPage(async (mod, schema, n) => {
    const out = [];
    const messages = [{ role: 'user', content: 'Describe a pet as JSON.' }];
    const response_format = { type: 'json_schema', json_schema: { name: 'pet', schema, strict: true } };
    for (let seed = 0; seed < n; seed++) {
      const req = { messages, response_format, temperature: 1, seed, max_tokens: 60 };
      if (seed % 4 === 3) {
        // Every fourth streamed: the chunks join to the same kind of reply.
        let text = '';
        let finish = null;
        for await (const c of await window.__smol.chat.completions.create({ ...req, stream: true })) {
          text += c.choices[0]?.delta?.content ?? '';
          finish = c.choices[0]?.finish_reason ?? finish;
        }
        out.push({ text, finish, streamed: true });
      } else {
        const reply = await window.__smol.chat.completions.create(req);
        out.push({ text: reply.choices[0].message.content, finish: reply.choices[0].finish_reason, extra: reply.usage.extra, tokens: reply.usage.completion_tokens });
      }
    }
    return out;
  }, PET_SCHEMA, SAMPLES);
  assert.ok(!r.thrown, JSON.stringify(r.thrown));
  assert.equal(r.length, SAMPLES);
  for (const s of r) {
    const v = JSON.parse(s.text);
    assert.ok(validate(v), `${s.text}: ${JSON.stringify(validate.errors)}`);
    assert.equal(s.finish, 'stop', 'the grammar ended the reply');
  }
  const distinct = new Set(r.map((s) => s.text));
  assert.ok(distinct.size >= 4, `temperature 1.0 varies the output: ${[...distinct].join('\n')}`);
  assert.ok(r[0].extra.mask_ms_per_token > 0, 'usage reports the mask cost');
  const tokens = r.reduce((a, s) => a + (s.tokens ?? 0), 0);
  console.log(`SmolLM2 json_schema in the browser: ${SAMPLES} samples (${distinct.size} distinct) in ${((Date.now() - t0) / 1000).toFixed(0)} s; `
    + `mask ${r[0].extra.mask_ms_per_token.toFixed(2)} ms/token, compile ${r[0].extra.grammar_compile_ms.toFixed(1)} ms, ${tokens} tokens in the non-streamed replies; e.g. ${r[0].text}`);
});

test('grammars restrict the output exactly: GBNF date (grammar field), Lark expression (response_format)', async () => {
  const gbnf = 'root ::= year "-" month "-" day\nyear ::= "19" [0-9] [0-9] | "20" [0-9] [0-9]\nmonth ::= "0" [1-9] | "1" [0-2]\nday ::= "0" [1-9] | [12] [0-9] | "3" [01]\n';
  const lark = 'start: expr\nexpr: term (("+" | "-" | "*") term)*\nterm: /[0-9]{1,2}/ | "(" expr ")"\n';
  const r = await session.inPage(async (mod, g, l) => {
    const e = window.__smol;
    const dates = [];
    for (let seed = 0; seed < 2; seed++) {
      const c = await e.completions.create({ prompt: 'The first moon landing was on', grammar: g, temperature: 1, seed, max_tokens: 16 });
      dates.push(c.choices[0]);
    }
    const ex = await e.completions.create({ prompt: 'An arithmetic expression:', response_format: { type: 'grammar', grammar: l }, temperature: 0.8, seed: 3, max_tokens: 10 });
    return { dates, ex: ex.choices[0] };
  }, gbnf, lark);
  assert.ok(!r.thrown, JSON.stringify(r.thrown));
  for (const d of r.dates) {
    assert.match(d.text, /^(19|20)\d\d-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])$/);
    assert.equal(d.finish_reason, 'stop');
  }
  if (r.ex.finish_reason === 'stop') assert.match(r.ex.text, /^[0-9()+\-*]+$/);
  // Cut by max_tokens or not, every character is from the grammar's alphabet.
  assert.match(r.ex.text, /^[0-9()+\-*]*$/, r.ex.text);
});

test('bad schemas and grammars fail with typed errors before any token; the engine still works', async () => {
  const r = await session.inPage(async () => {
    const e = window.__smol;
    const messages = [{ role: 'user', content: 'Hi' }];
    const codeOf = async (req) => {
      try {
        await e.chat.completions.create({ messages, max_tokens: 4, ...req });
        return 'no error';
      } catch (err) {
        return `${err.code}: ${err.message}`;
      }
    };
    return {
      schema: await codeOf({ response_format: { type: 'json_schema', json_schema: { name: 'x', schema: { type: 'objekt' } } } }),
      unsupported: await codeOf({ response_format: { type: 'json_schema', json_schema: { name: 'x', schema: { type: 'object', dependentSchemas: { a: { required: ['b'] } } } } } }),
      grammar: await codeOf({ grammar: 'start: undefined_rule' }),
      gbnf: await codeOf({ grammar: 'root ::= "a" | missing' }),
      format: await codeOf({ response_format: { type: 'xml' } }),
      both: await codeOf({ grammar: 'start: "a"', response_format: { type: 'json_object' } }),
      toolChoice: await codeOf({ tool_choice: 'required' }),
      after: (await e.chat.completions.create({ messages, max_tokens: 2, temperature: 0 })).choices[0].finish_reason,
    };
  });
  assert.ok(!r.thrown, JSON.stringify(r.thrown));
  assert.match(r.schema, /^INVALID_SCHEMA: /);
  assert.match(r.unsupported, /^UNSUPPORTED_SCHEMA: .*dependentSchemas/);
  assert.match(r.grammar, /^INVALID_GRAMMAR: /);
  assert.match(r.gbnf, /^INVALID_GRAMMAR: /);
  assert.match(r.format, /^INVALID_ARGUMENT: response_format.type/);
  assert.match(r.both, /^INVALID_ARGUMENT: /);
  assert.match(r.toolChoice, /^INVALID_ARGUMENT: tool_choice/);
  assert.equal(r.after, 'length');
});

const WEATHER = {
  type: 'function',
  function: {
    name: 'get_weather',
    description: 'Current weather in a city',
    parameters: {
      type: 'object',
      properties: { city: { type: 'string', maxLength: 12 }, unit: { enum: ['celsius', 'fahrenheit'] } },
      required: ['city', 'unit'],
      additionalProperties: false,
    },
  },
};
const TIME = {
  type: 'function',
  function: { name: 'get_time', parameters: { type: 'object', properties: { zone: { enum: ['UTC', 'CET'] } }, required: ['zone'], additionalProperties: false } },
};

test('tool calling round trip (Llama 3.1 template, real vocabulary): call, streamed deltas, tool result, answer', async () => {
  const validateArgs = new Ajv({ strict: true }).compile(WEATHER.function.parameters);
  const r = await session.inPage(async (mod, weather, time) => {
    const e = window.__tiny;
    const tools = [weather, time];
    const messages = [{ role: 'user', content: 'What is the weather in Paris?' }];
    const named = { type: 'function', function: { name: 'get_weather' } };
    const call = await e.chat.completions.create({ messages, tools, tool_choice: named, temperature: 1, seed: 5, max_tokens: 64 });
    const required = await e.chat.completions.create({ messages, tools, tool_choice: 'required', temperature: 1, seed: 6, max_tokens: 64 });
    // The same request streamed: OpenAI tool-call deltas that add up to the same call.
    const chunks = [];
    for await (const c of await e.chat.completions.create({ messages, tools, tool_choice: named, temperature: 1, seed: 5, max_tokens: 64, stream: true })) {
      chunks.push(c.choices[0] ?? null);
    }
    const msg = call.choices[0].message;
    const followUp = [
      ...messages,
      { role: 'assistant', content: null, tool_calls: msg.tool_calls },
      { role: 'tool', tool_call_id: msg.tool_calls?.[0]?.id, content: '{"temperature": 21, "unit": "celsius"}' },
    ];
    const answer = await e.chat.completions.create({ messages: followUp, tools, temperature: 0, max_tokens: 8 });
    const auto = await e.chat.completions.create({ messages, tools, temperature: 1, seed: 8, max_tokens: 24 });
    return { call: call.choices[0], required: required.choices[0], chunks, answer: answer.choices[0], answerUsage: answer.usage, callUsage: call.usage, auto: auto.choices[0] };
  }, WEATHER, TIME);
  assert.ok(!r.thrown, JSON.stringify(r.thrown));

  // The call: OpenAI shape, arguments valid against the function's schema.
  assert.equal(r.call.finish_reason, 'tool_calls', JSON.stringify(r.call));
  assert.equal(r.call.message.content, null);
  const [tc] = r.call.message.tool_calls;
  assert.equal(tc.type, 'function');
  assert.equal(tc.function.name, 'get_weather');
  assert.match(tc.id, /^call-/);
  const args = JSON.parse(tc.function.arguments);
  assert.ok(validateArgs(args), `${tc.function.arguments}: ${JSON.stringify(validateArgs.errors)}`);

  // tool_choice 'required': a call of one of the tools, valid for that tool.
  const rc = r.required.message.tool_calls?.[0];
  assert.ok(rc && ['get_weather', 'get_time'].includes(rc.function.name), JSON.stringify(r.required));
  const ra = JSON.parse(rc.function.arguments);
  if (rc.function.name === 'get_weather') assert.ok(validateArgs(ra), rc.function.arguments);
  else assert.ok(['UTC', 'CET'].includes(ra.zone), rc.function.arguments);

  // Streamed: role chunk, then a delta with id/type/name and empty arguments, then argument
  // pieces, then finish_reason 'tool_calls'; the pieces join to the non-streamed arguments.
  const deltas = r.chunks.filter((c) => c?.delta?.tool_calls).map((c) => c.delta.tool_calls[0]);
  assert.ok(deltas.length >= 3, JSON.stringify(r.chunks));
  assert.deepEqual(deltas[0], { index: 0, id: deltas[0].id, type: 'function', function: { name: 'get_weather', arguments: '' } });
  assert.ok(deltas.slice(1).every((d) => d.index === 0 && !d.id && typeof d.function.arguments === 'string'));
  assert.equal(deltas.map((d) => d.function.arguments).join(''), tc.function.arguments);
  assert.ok(r.chunks.every((c) => !c || c.delta?.content === undefined || c.delta.content === ''), 'no text content in a call');
  assert.equal(r.chunks.at(-1).finish_reason, 'tool_calls');

  // The tool result continues the conversation: the prompt grew by the call and the result.
  assert.ok(r.answerUsage.prompt_tokens > r.callUsage.prompt_tokens + 20, JSON.stringify([r.answerUsage, r.callUsage]));
  assert.ok(['stop', 'length', 'tool_calls'].includes(r.answer.finish_reason));
  const ans = r.answer.message;
  assert.ok(typeof ans.content === 'string' || ans.tool_calls?.length === 1, JSON.stringify(ans));

  // 'auto': either a valid call or text that is not a broken call.
  const am = r.auto.message;
  if (am.tool_calls && r.auto.finish_reason === 'tool_calls') JSON.parse(am.tool_calls[0].function.arguments);
  else if (am.tool_calls) assert.equal(r.auto.finish_reason, 'length');
  else assert.ok(typeof am.content === 'string' && !am.content.trimStart().startsWith('{'), JSON.stringify(am));
});
