// Deliberate misuses of the public API: this file MUST fail to type-check. Every line that ends in
// `// ERROR TSnnnn` must produce exactly that error, and no other line may produce one
// (tests/web/types.test.mjs checks both). Keep each misuse on one line.

import { ErrorCode, LlamaEngine, LlamaError, type ChatCompletion, type ChatCompletionMessageParam } from 'llama-webgpu';

declare const engine: LlamaEngine;
const messages: ChatCompletionMessageParam[] = [{ role: 'user', content: 'Hi' }];

export async function misuse(e: LlamaError): Promise<void> {
  const reply = await engine.chat.completions.create({ messages });
  if (reply.choices[0]!.finish_reason === 'cancelled') return; // ERROR TS2367
  await engine.chat.completions.create({ messages: 42 }); // ERROR TS2769
  await engine.chat.completions.create({ max_tokens: 16 }); // ERROR TS2769
  await engine.chat.completions.create({ messages, n: 2 }); // ERROR TS2769
  await engine.completions.create({ prompt: new Uint32Array(4) }); // ERROR TS2769
  const streamed: ChatCompletion = await engine.chat.completions.create({ messages, stream: true }); // ERROR TS2740
  for await (const chunk of await engine.chat.completions.create({ messages })) console.log(chunk); // ERROR TS2504
  const bot: ChatCompletionMessageParam = { role: 'bot', content: 'x' }; // ERROR TS2322
  await LlamaEngine.load('/m.gguf', { precision: 'f8' }); // ERROR TS2322
  await LlamaEngine.load('/m.gguf', { subgroups: 'off' }); // ERROR TS2322
  await LlamaEngine.load('/m.gguf', { intDot: 1 }); // ERROR TS2322
  await LlamaEngine.load('/m.gguf', { tuning: { join: 'yes' } }); // ERROR TS2322
  await LlamaEngine.load(new URL('/m.gguf', location.href)); // ERROR TS2345
  await LlamaEngine.load('/m.gguf', { onProgress: (p) => p.phase === 'downloading' }); // ERROR TS2367
  if (LlamaEngine.isSupported() === true) return; // ERROR TS2367
  new LlamaEngine(); // ERROR TS2673
  if (e.code === 'NETWORK_FAILURE') return; // ERROR TS2367
  console.log(engine.completions.create({ prompt: 'x' }).choices); // ERROR TS2339
  await engine.generate('x').then(console.log); // ERROR TS2339
  const ids: Uint32Array = await engine.tokenize('x'); // ERROR TS2740
  console.log(engine.info.model.name); // ERROR TS2339
  engine.info = engine.info; // ERROR TS2540
  await engine.tokenize('x', { add_bos: false }); // ERROR TS2561
  const code: ErrorCode = 'OOPS'; // ERROR TS2322
  await engine.benchmark({ promptTokens: '128' }); // ERROR TS2322
  console.log((await engine.benchmark()).profile[0]); // ERROR TS2531
  console.log(streamed, bot, ids, code);
}
