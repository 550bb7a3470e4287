// @ts-check
// Model sources → shards. A source is a URL, a list of URLs, a File/Blob or a list of Files; a
// gguf-split name (`model-00001-of-00003.gguf`, see ./shard-name.js) expands to, or is checked
// against, the full set of shards.

import { ErrorCode, LlamaError } from './errors.js';
import { parseShardName, shardName } from './shard-name.js';

/**
 * Where a model comes from:
 *
 * - a URL string (absolute, or relative to the page — see the note below). A gguf-split name
 *   (`name-00001-of-00003.gguf`) is enough: the other shards' URLs are derived from it (query
 *   strings are kept);
 * - a list of URL strings: all shards of one split model, in any order;
 * - a `File`/`Blob` (e.g. from `<input type="file">`);
 * - the `File`s of all shards of a split model, as an array or a `FileList`.
 *
 * In worker mode (the default) a relative URL is resolved against the worker script's URL, so
 * prefer absolute URLs: `new URL('models/x.gguf', location.href).href`.
 * @typedef {string | readonly string[] | Blob | readonly Blob[] | FileList} ModelSource
 */

/**
 * One file of a model, as the loader tracks it.
 * @typedef {object} Shard
 * @property {string} key stable identity: the absolute URL, or `file:<name>:<size>:<lastModified>`
 * @property {string} name file name (last URL path segment, decoded)
 * @property {string} [url] absolute URL (URL sources)
 * @property {Blob} [file] the File/Blob (file sources)
 * @property {number} [size] set by probeShards
 * @property {string | null} [etag] set by probeShards
 * @property {string | null} [lastModified] set by probeShards
 * @property {boolean} [offline] set by probeShards when the network failed and the complete cached copy stands in
 * @property {boolean} [ifRangeOk] set by probeShards: the validators may go in If-Range (same origin, no redirect)
 */

/** @param {unknown} x @returns {x is Blob} */
function isBlob(x) {
  return typeof Blob !== 'undefined' && x instanceof Blob;
}

/** The decoded last path segment of a URL (its host when the path is empty). @param {URL} u */
function urlName(u) {
  const seg = u.pathname.split('/').pop() || u.hostname;
  try {
    return decodeURIComponent(seg);
  } catch {
    return seg;
  }
}

/** @param {string | URL} s @param {string} [baseUrl] */
function toUrl(s, baseUrl) {
  try {
    return new URL(String(s), baseUrl);
  } catch {
    throw new LlamaError(ErrorCode.INVALID_ARGUMENT, `not a valid URL: ${String(s)}${baseUrl ? '' : ' (relative URLs need a base URL)'}`);
  }
}

/** @param {URL} u @returns {Shard} */
function urlShard(u) {
  return { key: u.href, name: urlName(u), url: u.href };
}

/** @param {Blob & {name?: string, lastModified?: number}} f @returns {Shard} */
function fileShard(f) {
  const name = typeof f.name === 'string' && f.name ? f.name : 'model.gguf';
  return { key: `file:${name}:${f.size}:${f.lastModified ?? 0}`, name, file: f };
}

/**
 * The URL of shard `index` (0-based) of a split, given the URL of one of its shards: the name in
 * the path changes, the query string stays. The prefix keeps its spelling in the URL (`+` stays
 * `+`), so the other shards are asked for as the host names them.
 * @param {URL} u
 * @param {number} index
 * @param {number} count
 */
function shardUrl(u, index, count) {
  const v = new URL(u.href);
  const dir = v.pathname.slice(0, v.pathname.lastIndexOf('/') + 1);
  const raw = parseShardName(v.pathname.slice(dir.length));
  const decoded = raw ? null : parseShardName(urlName(v));
  if (raw) v.pathname = dir + shardName(raw.prefix, index, count);
  else if (decoded) v.pathname = dir + encodeURIComponent(shardName(decoded.prefix, index, count));
  return v;
}

/** How the list of a source reads, for error messages. @param {unknown} s */
const kindOf = (s) => Object.prototype.toString.call(s);

/**
 * Turns a model source into its shards, in shard order.
 *
 * - A URL (string or URL object) whose name is `…-00001-of-0000N.gguf` expands to all N shard URLs
 *   (query strings are kept); another shard number alone is BAD_SPLIT.
 * - A list of URLs or Files must be the complete set of one model's gguf-split shards, in any order;
 *   a missing, repeated or foreign shard is BAD_SPLIT. A one-element list is treated as its element.
 * - A single File/Blob is one shard; a File named as one shard of several is BAD_SPLIT (select them all).
 * - A name that is not a shard name (`-00000-of-00003`, `-00004-of-00003`) is an ordinary file name.
 *
 * @param {ModelSource | URL | Array<string | URL>} source
 * @param {string} [baseUrl] base for relative URLs (default: the page's or worker's location)
 * @returns {Shard[]}
 * @throws {LlamaError} BAD_SPLIT or INVALID_ARGUMENT
 */
export function resolveSource(source, baseUrl = globalThis.location?.href) {
  if (source == null) throw new LlamaError(ErrorCode.INVALID_ARGUMENT, 'no model source given');
  /** @type {unknown[]} */
  let list;
  if (typeof source === 'string' || source instanceof URL || isBlob(source)) list = [source];
  else if (Array.isArray(source)) list = source;
  else if (typeof source === 'object' && typeof source.length === 'number') list = Array.from(/** @type {ArrayLike<unknown>} */ (source));
  else throw new LlamaError(ErrorCode.INVALID_ARGUMENT, `unsupported model source: ${kindOf(source)} (want a URL, File, Blob or a list of them)`);
  if (list.length === 0) throw new LlamaError(ErrorCode.INVALID_ARGUMENT, 'empty list of model sources');
  const blobs = list.filter(isBlob).length;
  if (blobs !== 0 && blobs !== list.length) throw new LlamaError(ErrorCode.INVALID_ARGUMENT, 'a model source list mixes Files and URLs');
  for (const s of list) {
    if (!isBlob(s) && typeof s !== 'string' && !(s instanceof URL)) {
      throw new LlamaError(ErrorCode.INVALID_ARGUMENT, `unsupported model source entry: ${kindOf(s)}`);
    }
  }
  const shards = list.map((s) => (isBlob(s) ? fileShard(s) : urlShard(toUrl(/** @type {string | URL} */ (s), baseUrl))));
  return list.length === 1 ? expandOne(shards[0]) : orderSet(shards);
}

/**
 * A source of one file: a first-shard URL stands for its whole split; any other shard alone is
 * BAD_SPLIT, since the rest cannot be found from a File or a later shard's URL.
 * @param {Shard} sh
 * @returns {Shard[]}
 */
function expandOne(sh) {
  const sp = parseShardName(sh.name);
  if (!sp || sp.count === 1) return [sh];
  const first = shardName(sp.prefix, 0, sp.count);
  if (!sh.url) {
    const missing = sp.index === 0 ? 2 : 1;
    throw new LlamaError(
      ErrorCode.BAD_SPLIT,
      `shard ${missing} of ${sp.count} is missing: ${sh.name} is one shard of a split model; select all ${sp.count} files (${first} …)`,
    );
  }
  if (sp.index !== 0) {
    throw new LlamaError(
      ErrorCode.BAD_SPLIT,
      `${sh.url} is shard ${sp.index + 1} of ${sp.count}; open the first shard (${first}) or pass all shard URLs`,
    );
  }
  const u = new URL(sh.url);
  return Array.from({ length: sp.count }, (_, i) => urlShard(shardUrl(u, i, sp.count)));
}

/**
 * A list of files: they must be every shard of one split model, each once; returned in order.
 * @param {Shard[]} shards
 * @returns {Shard[]}
 */
function orderSet(shards) {
  let count = 0;
  let prefix = '';
  /** @type {Map<number, Shard>} */
  const byIndex = new Map();
  for (const sh of shards) {
    const sp = parseShardName(sh.name);
    if (!sp) {
      throw new LlamaError(
        ErrorCode.BAD_SPLIT,
        `${sh.url ?? sh.name} is not a gguf-split shard (name-00001-of-00003.gguf); a list must hold all shards of one split model`,
      );
    }
    if (byIndex.size === 0) {
      count = sp.count;
      prefix = sp.prefix;
    } else if (sp.count !== count) {
      throw new LlamaError(ErrorCode.BAD_SPLIT, `shards disagree on the shard count: ${sh.name} says ${sp.count}, another says ${count}`);
    } else if (sp.prefix !== prefix) {
      throw new LlamaError(ErrorCode.BAD_SPLIT, `shards of different models: ${sh.name} does not belong to ${prefix}`);
    }
    if (byIndex.has(sp.index)) throw new LlamaError(ErrorCode.BAD_SPLIT, `shard ${sp.index + 1} of ${count} is given twice: ${sh.name}`);
    byIndex.set(sp.index, sh);
  }
  const out = [];
  for (let i = 0; i < count; i++) {
    const sh = byIndex.get(i);
    if (!sh) {
      const some = shards[0];
      const where = some.url ? shardUrl(new URL(some.url), i, count).href : shardName(prefix, i, count);
      throw new LlamaError(ErrorCode.BAD_SPLIT, `shard ${i + 1} of ${count} is missing: ${where}`);
    }
    out.push(sh);
  }
  return out;
}
