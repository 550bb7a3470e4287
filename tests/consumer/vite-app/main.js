import { LlamaEngine } from 'llama-webgpu';

// ?model=URL&prompt=TEXT&max_tokens=N (a root-relative or absolute model URL)
const params = new URLSearchParams(location.search);
const model = params.get('model') ?? '/models/SmolLM2-135M-Instruct.Q4_1.gguf';
const status = document.querySelector('#status');
const answer = document.querySelector('#answer');

try {
  const engine = await LlamaEngine.load(model, {
    onProgress: (p) => (status.textContent = `${p.phase} ${(p.loadedBytes / 1e6).toFixed(0)} / ${(p.totalBytes / 1e6).toFixed(0)} MB`),
  });
  status.textContent = 'generating';
  const stream = await engine.chat.completions.create({
    messages: [
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: params.get('prompt') ?? 'Why is the sky blue?' },
    ],
    max_tokens: Number(params.get('max_tokens') ?? 256),
    stream: true,
  });
  for await (const chunk of stream) answer.textContent += chunk.choices[0]?.delta.content ?? '';
  status.textContent = 'done';
} catch (e) {
  status.textContent = `error ${e.code}: ${e.message}`; // a LlamaError: e.code is one of ErrorCode
}
