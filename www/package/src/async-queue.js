// @ts-check
// A push-style producer (a generation, or a worker's stream messages) as an async iterable: the
// producer pushes items and ends or fails; the consumer's `for await` reads them in order.

import { abortError } from './errors.js';

/**
 * @template T
 * @typedef {object} AsyncQueue
 * @property {(item: T) => void} push queues an item for the consumer
 * @property {() => void} end no more items: the iteration ends after the queued ones
 * @property {(error: unknown) => void} fail the iteration throws `error` after the queued items
 * @property {AsyncIterable<T> & AsyncIterator<T>} iterable what the consumer reads
 */

/**
 * A queue whose iteration ends early, without the queued items, when `signal` aborts (the next
 * read throws its abort error) or when the consumer leaves the loop; the hooks tell the producer.
 * @template T
 * @param {AbortSignal | undefined} signal
 * @param {{onAbort?: () => void, onReturn?: () => void}} [stop] called when the iteration sees the
 *   aborted signal, and when the consumer leaves the loop early (break)
 * @returns {AsyncQueue<T>}
 */
export function asyncQueue(signal, { onAbort, onReturn } = {}) {
  /** @type {T[]} */
  const items = [];
  /** @type {(() => void) | null} */
  let wake = null;
  let ended = false;
  /** @type {unknown} */
  let failure = null;
  /** @type {AsyncIterable<T> & AsyncIterator<T>} */
  const iterable = {
    [Symbol.asyncIterator]() {
      return this;
    },
    async next() {
      for (;;) {
        // An aborted request ends at once, even with items still queued.
        if (signal?.aborted) {
          onAbort?.();
          throw abortError(signal);
        }
        if (items.length) return { value: /** @type {T} */ (items.shift()), done: false };
        if (failure) throw failure;
        if (ended) return { value: undefined, done: true };
        await new Promise((r) => {
          wake = () => r(undefined);
        });
        wake = null;
      }
    },
    async return() {
      onReturn?.();
      return { value: undefined, done: true };
    },
  };
  return {
    push(item) {
      items.push(item);
      wake?.();
    },
    end() {
      ended = true;
      wake?.();
    },
    fail(error) {
      failure = error;
      ended = true;
      wake?.();
    },
    iterable,
  };
}
