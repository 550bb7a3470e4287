// @ts-check
// One shard over HTTP: probe its size and validators, then GET its bytes, resuming a cut, stalled
// or short body with `Range: bytes=N-` (and `If-Range`, so a file that changed on the server
// starts over instead of being spliced), retried by the policy of ./retry.js.

import { ErrorCode, LlamaError, abortError } from './errors.js';
import { backoffMs, isRetryableStatus, RETRY_POLICY } from './retry.js';

/** @typedef {import('./sources.js').Shard} Shard */

const STATUS_TEXT = {
  400: 'Bad Request', 401: 'Unauthorized', 403: 'Forbidden', 404: 'Not Found', 405: 'Method Not Allowed',
  408: 'Request Timeout', 410: 'Gone', 416: 'Range Not Satisfiable', 429: 'Too Many Requests',
  500: 'Internal Server Error', 501: 'Not Implemented', 502: 'Bad Gateway', 503: 'Service Unavailable',
  504: 'Gateway Timeout',
};

// Never the HTTP cache: it cannot hold big models, and its partial entries rewrite our Range requests.
const NO_STORE = /** @type {const} */ ('no-store');

/** @param {Response} res */
function statusLine(res) {
  const text = res.statusText || STATUS_TEXT[/** @type {keyof typeof STATUS_TEXT} */ (res.status)];
  return `HTTP ${res.status}${text ? ' ' + text : ''}`;
}

/** @param {string} method @param {string} url @param {Response} res */
function httpError(method, url, res) {
  return new LlamaError(ErrorCode.NETWORK_ERROR, `${method} ${url} → ${statusLine(res)}`, { url, status: res.status });
}

/** The error of a fetch() that threw (no HTTP answer). @param {string} url @param {any} e */
function fetchFailed(url, e) {
  const why = e && e.message ? ` (${e.message})` : '';
  return new LlamaError(ErrorCode.NETWORK_ERROR, `network error or CORS policy blocked ${url}${why}`, { url });
}

/** @param {any} e @param {AbortSignal} [signal] */
function isAbort(e, signal) {
  return (signal && signal.aborted) || (e && e.name === 'AbortError' && !(e instanceof LlamaError));
}

/**
 * Waits `ms`, or rejects with the signal's abort error.
 * @param {number} ms
 * @param {AbortSignal} [signal]
 * @returns {Promise<void>}
 */
function sleep(ms, signal) {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(abortError(signal));
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(t);
      reject(abortError(signal));
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** @param {Response} res @param {string} name */
function headerInt(res, name) {
  const v = res.headers.get(name);
  if (v == null || !/^\s*\d+\s*$/.test(v)) return null;
  return Number(v);
}

/** `bytes a-b/total` → {start, end, total|null} @param {string | null} v */
function parseContentRange(v) {
  const m = v && /^\s*bytes\s+(\d+)-(\d+)\/(\d+|\*)\s*$/i.exec(v);
  if (!m) return null;
  return { start: Number(m[1]), end: Number(m[2]), total: m[3] === '*' ? null : Number(m[3]) };
}

/** @param {string | null | undefined} e */
const isStrongEtag = (e) => typeof e === 'string' && e.startsWith('"');

/**
 * Whether two ETags name the same version of a file, weak or not.
 * @param {string} a
 * @param {string} b
 */
export const sameEtag = (a, b) => a.replace(/^W\//, '') === b.replace(/^W\//, '');

/** @param {string} url */
function sameOriginAs(url) {
  try {
    return globalThis.location ? new URL(url).origin === new URL(globalThis.location.href).origin : false;
  } catch {
    return false;
  }
}

/**
 * Finds a URL shard's size, ETag and Last-Modified: HEAD, or a one-byte `Range: bytes=0-0` GET
 * where HEAD is refused or gives no length. Fills them into `shard`. Failures the policy calls
 * retryable are retried; before giving up on an unreachable shard, `standIn(err)` may supply it
 * some other way (the cache) and return true.
 * @param {Shard & {url: string}} shard
 * @param {{signal: AbortSignal | undefined, fetchImpl: typeof fetch, retries: number,
 *   standIn: (err: LlamaError) => Promise<boolean>}} opts
 * @returns {Promise<Shard>}
 * @throws {LlamaError} NETWORK_ERROR naming the method, URL and HTTP status; ABORTED
 */
export async function probe(shard, { signal, fetchImpl, retries, standIn }) {
  const url = shard.url;
  const init = /** @type {RequestInit} */ ({ signal, cache: NO_STORE });
  for (let attempt = 0; ; attempt++) {
    if (signal?.aborted) throw abortError(signal);
    /** @type {LlamaError} */
    let err;
    try {
      let res = await fetchImpl(url, { ...init, method: 'HEAD' });
      let method = 'HEAD';
      let size = res.ok ? headerInt(res, 'content-length') : null;
      if ((res.ok && size === null) || (!res.ok && res.status !== 404 && res.status !== 410 && !isRetryableStatus(res.status))) {
        // HEAD not allowed (405/501/403 on GET-signed URLs) or no length: ask for one byte instead.
        method = 'GET';
        res = await fetchImpl(url, { ...init, method: 'GET', headers: { Range: 'bytes=0-0' } });
        if (res.status === 206) {
          size = parseContentRange(res.headers.get('content-range'))?.total ?? null;
        } else if (res.ok) {
          size = headerInt(res, 'content-length');
        }
        try {
          await res.body?.cancel();
        } catch {}
      }
      if (!res.ok) {
        err = httpError(method, url, res);
        if (!isRetryableStatus(res.status)) {
          if (await standIn(err)) return shard;
          throw err;
        }
      } else if (size === null) {
        throw new LlamaError(ErrorCode.NETWORK_ERROR, `${method} ${url} gave no Content-Length: cannot tell the size of the shard`, { url, status: res.status });
      } else {
        Object.assign(shard, {
          size,
          etag: res.headers.get('etag'),
          lastModified: res.headers.get('last-modified'),
          offline: false,
        });
        shard.ifRangeOk = sameOriginAs(res.url || url) && sameOriginAs(url);
        return shard;
      }
    } catch (e) {
      if (e instanceof LlamaError) throw e;
      if (isAbort(e, signal)) throw abortError(signal);
      err = fetchFailed(url, e);
      if (await standIn(err)) return shard;
    }
    if (attempt >= retries) {
      throw new LlamaError(ErrorCode.NETWORK_ERROR, `${err.message}; gave up after ${retries} retries`, err.details);
    }
    await sleep(backoffMs(attempt + 1), signal);
  }
}

/** A failure worth another attempt. @param {LlamaError} e */
const retryable = (e) => Object.assign(e, { retry: true });

/**
 * GETs bytes [from, size) of a probed URL shard into `onBytes`, in order, each byte once. A cut,
 * stalled or short body, a fetch() that throws, and a retryable status are retried from the
 * byte reached, up to `retries` failures in a row (an attempt that moved `RETRY_POLICY.resetBytes`
 * starts the count again). A server that ignores Range and sends the whole file is fine: the
 * prefix is skipped.
 * @param {Shard & {url: string, size: number}} shard
 * @param {number} from
 * @param {(u8: Uint8Array) => Promise<void>} onBytes
 * @param {{signal: AbortSignal, abortErr: () => LlamaError, fetchImpl: typeof fetch, retries: number,
 *   stallTimeoutMs: number}} opts `abortErr` is thrown once `signal` aborts
 * @returns {Promise<void>}
 * @throws {LlamaError} NETWORK_ERROR (a length mismatch, a changed file, retries exhausted), or abortErr()
 */
export async function download(shard, from, onBytes, { signal, abortErr, fetchImpl, retries, stallTimeoutMs }) {
  const { url, size } = shard;
  const etag = shard.etag ?? null;
  const ifRange = shard.ifRangeOk ? (isStrongEtag(etag) ? etag : shard.lastModified) : null;
  let received = from;
  let attempt = 0;
  /** @type {LlamaError | null} */
  let lastErr = null;
  /** @type {number | undefined} */
  let lastStatus;
  while (received < size) {
    if (signal.aborted) throw abortErr();
    const startedAt = received;
    const req = new AbortController();
    const unlink = () => req.abort(signal.reason);
    signal.addEventListener('abort', unlink, { once: true });
    /** @type {Record<string, string>} */
    const headers = {};
    if (received > 0) {
      headers.Range = `bytes=${received}-`;
      if (ifRange) headers['If-Range'] = ifRange;
    }
    /** @type {Response} */
    let res;
    /** @type {ReadableStreamDefaultReader<Uint8Array> | null} */
    let reader = null;
    const stalled = () => req.abort(new Error(`no data for ${stallTimeoutMs / 1000} s`));
    /** @param {any} e */
    const stallOr = (e) => (req.signal.aborted && req.signal.reason?.message ? { message: req.signal.reason.message } : e);
    try {
      const timer = setTimeout(stalled, stallTimeoutMs);
      try {
        res = await fetchImpl(url, { signal: req.signal, headers, cache: NO_STORE });
      } catch (e) {
        if (signal.aborted) throw abortErr();
        throw retryable(fetchFailed(url, stallOr(e)));
      } finally {
        clearTimeout(timer);
      }
      lastStatus = res.status;
      if (!res.ok) {
        const err = httpError('GET', url, res);
        try {
          await res.body?.cancel();
        } catch {}
        if (res.status === 416) throw new LlamaError(ErrorCode.NETWORK_ERROR, `${err.message}: the remote file changed size (expected ${size} bytes)`, { url, status: 416 });
        if (isRetryableStatus(res.status)) throw retryable(err);
        throw err;
      }
      const resEtag = res.headers.get('etag');
      if (etag && resEtag && !sameEtag(resEtag, etag)) {
        throw new LlamaError(ErrorCode.NETWORK_ERROR, `${url} changed on the server during the download (ETag ${etag} → ${resEtag})`, { url, status: res.status });
      }
      let skip = checkLength(res, url, received, size);
      if (!res.body) throw new LlamaError(ErrorCode.NETWORK_ERROR, `GET ${url} has no body`, { url, status: res.status });
      reader = res.body.getReader();
      for (;;) {
        /** @type {ReadableStreamReadResult<Uint8Array>} */
        let r;
        const timer = setTimeout(stalled, stallTimeoutMs);
        try {
          r = await reader.read();
        } catch (e) {
          if (signal.aborted) throw abortErr();
          const msg = stallOr(e)?.message || String(e);
          throw retryable(new LlamaError(ErrorCode.NETWORK_ERROR, msg, { url, status: res.status }));
        } finally {
          clearTimeout(timer);
        }
        if (r.done) break;
        let v = r.value;
        if (skip > 0) {
          if (v.length <= skip) {
            skip -= v.length;
            continue;
          }
          v = v.subarray(skip);
          skip = 0;
        }
        if (received + v.length > size) {
          throw new LlamaError(ErrorCode.NETWORK_ERROR, `length mismatch: ${url} sent more than the ${size} bytes it announced`, { url, status: res.status });
        }
        received += v.length;
        await onBytes(v);
        if (signal.aborted) throw abortErr();
      }
      reader = null;
      if (received < size) {
        throw retryable(new LlamaError(ErrorCode.NETWORK_ERROR, `the response ended early`, { url, status: res.status }));
      }
    } catch (e) {
      if (signal.aborted) throw abortErr();
      if (!(e && /** @type {any} */ (e).retry)) throw e;
      lastErr = /** @type {LlamaError} */ (e);
    } finally {
      if (reader) reader.cancel().catch(() => {});
      signal.removeEventListener('abort', unlink);
      req.abort();
    }
    if (received >= size) break;
    if (received - startedAt >= RETRY_POLICY.resetBytes) attempt = 0;
    attempt++;
    if (attempt > retries) {
      throw new LlamaError(
        ErrorCode.NETWORK_ERROR,
        `download of ${url} failed after ${retries} retries at byte ${received} of ${size}: ${lastErr?.message}`,
        /** @type {import('./errors.js').LlamaErrorDetails} */ ({ url, status: lastStatus }),
      );
    }
    await sleep(backoffMs(attempt), signal).catch(() => {
      throw abortErr();
    });
  }
}

/**
 * Checks a GET answer's length headers against the bytes still wanted; returns how many leading
 * bytes of its body to skip (a 200 to a Range request sends the whole file again).
 * @param {Response} res
 * @param {string} url
 * @param {number} received
 * @param {number} size
 */
function checkLength(res, url, received, size) {
  const len = headerInt(res, 'content-length');
  const encoded = !!res.headers.get('content-encoding');
  if (res.status !== 206) {
    if (!encoded && len !== null && len !== size) {
      throw new LlamaError(ErrorCode.NETWORK_ERROR, `length mismatch: GET ${url} announces ${len} bytes, expected ${size}`, { url, status: res.status });
    }
    return received;
  }
  const cr = parseContentRange(res.headers.get('content-range'));
  if (!cr || cr.start !== received || (cr.total !== null && cr.total !== size)) {
    throw new LlamaError(
      ErrorCode.NETWORK_ERROR,
      `GET ${url} with Range: bytes=${received}- answered Content-Range: ${res.headers.get('content-range')} (expected bytes ${received}-${size - 1}/${size})`,
      { url, status: 206 },
    );
  }
  if (!encoded && len !== null && len !== size - received) {
    throw new LlamaError(ErrorCode.NETWORK_ERROR, `length mismatch: GET ${url} announces ${len} bytes from byte ${received}, expected ${size - received}`, { url, status: 206 });
  }
  return 0;
}
