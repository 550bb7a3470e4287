// How the page writes sizes, durations, model names and reply timings.

/** Bytes in decimal units, as downloads are counted: 98.4 MB, 4.92 GB. */
export function formatBytes(n) {
  if (n === null || n === undefined || !Number.isFinite(n)) return '?';
  if (n < 1e3) return `${n} B`;
  if (n < 1e6) return `${(n / 1e3).toFixed(n < 1e4 ? 1 : 0)} kB`;
  if (n < 1e9) return `${(n / 1e6).toFixed(n < 1e7 ? 2 : 1)} MB`;
  return `${(n / 1e9).toFixed(2)} GB`;
}

/** Seconds as "45 s", "3 min 20 s", "1 h 5 min". */
export function formatDuration(s) {
  if (!Number.isFinite(s) || s < 0) return '–';
  if (s < 10) return `${s.toFixed(1)} s`;
  if (s < 60) return `${Math.round(s)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
  return `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`;
}

/** "SmolLM2-135M-Instruct-Q4_1" from ".../SmolLM2-135M-Instruct-Q4_1-00001-of-00003.gguf". */
export function modelName(nameOrUrl) {
  let base = String(nameOrUrl).split(/[?#]/)[0].split('/').pop() || String(nameOrUrl);
  try {
    base = decodeURIComponent(base);
  } catch {
    // keep it encoded
  }
  return base.replace(/-\d{5}-of-\d{5}\.gguf$/i, '').replace(/\.gguf$/i, '');
}

/** The name the page gives a model source (see state.js's ModelSource); '' for none. */
export function sourceName(src) {
  if (!src) return '';
  if (src.kind === 'files') return src.name;
  return src.entry?.name?.replace(/ \(local\)$/, '') ?? modelName(src.url);
}

/** A reply's timings from its OpenAI-shaped `usage` (timings under `extra`) and finish reason. */
export function formatStats(usage, finish) {
  const x = usage.extra ?? {};
  const cached = usage.prompt_tokens_details?.cached_tokens ?? 0;
  const prefilled = usage.prompt_tokens - cached;
  const parts = [
    `first token ${x.time_to_first_token_ms !== undefined ? `${(x.time_to_first_token_ms / 1000).toFixed(2)} s` : '–'}`,
    `prefill ${prefilled} tok${cached ? ` (+${cached} cached)` : ''} at ${x.prefill_tokens_per_s ? x.prefill_tokens_per_s.toFixed(1) : '–'} tok/s`,
    `decode ${usage.completion_tokens} tok at ${x.decode_tokens_per_s ? x.decode_tokens_per_s.toFixed(1) : '–'} tok/s`,
  ];
  const why = { stop: '', length: 'max tokens reached', abort: 'stopped' }[finish];
  if (why) parts.push(why);
  return parts.join(' · ');
}
