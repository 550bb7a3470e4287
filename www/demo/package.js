// The npm package as the demo uses it: the engine from the public entry, and the package's own
// reading of a model source into shards, so that the page checks a shard set and sizes a split
// model by the same rule the loader applies (resolveSource is not part of the public entry, so
// this is the one place that reaches inside the package).

export { LlamaEngine } from '../package/src/index.js';
export { resolveSource } from '../package/src/sources.js';
