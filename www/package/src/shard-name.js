// @ts-check
// The gguf-split shard-name rule, `<prefix>-<k>-of-<n>.gguf` with k and n as 5-digit numbers, as
// llama.cpp's gguf-split writes it. This is the rule of the Rust crate's `split_name_parts` and
// `shard_name` (src/gguf/split.rs), so the package and the CLI agree on which names are shards.
// No imports and no globals: Node imports it as it is.

const PAD = 5;
// `-00001-of-00003.gguf`: the 5 digits are ASCII only (`\d` without the `u` flag).
const SUFFIX = /^([\s\S]*)-(\d{5})-of-(\d{5})\.gguf$/;

/**
 * The name of shard `index` (0-based) of `count`: `shardName('m', 0, 3)` is `m-00001-of-00003.gguf`.
 * @param {string} prefix
 * @param {number} index 0-based
 * @param {number} count
 * @returns {string}
 */
export function shardName(prefix, index, count) {
  const pad = (/** @type {number} */ n) => String(n).padStart(PAD, '0');
  return `${prefix}-${pad(index + 1)}-of-${pad(count)}.gguf`;
}

/**
 * Splits a shard name into its parts, or returns null when `name` is not one: it must end in
 * `-DDDDD-of-DDDDD.gguf` with a shard number from 1 to the count. As in Rust, anything from the
 * first `?` or `#` on (a URL's query or fragment) is not part of the name.
 * @param {string} name a file name (or a URL)
 * @returns {{prefix: string, index: number, count: number} | null} `index` is 0-based
 */
export function parseShardName(name) {
  const end = name.search(/[?#]/);
  const m = SUFFIX.exec(end < 0 ? name : name.slice(0, end));
  if (!m) return null;
  const number = Number(m[2]);
  const count = Number(m[3]);
  if (number === 0 || number > count) return null;
  return { prefix: m[1], index: number - 1, count };
}
