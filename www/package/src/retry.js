// @ts-check
// When a failed download is tried again, and how long to wait first. The Rust CLI follows the same
// policy (src/net/retry.rs; tests/policies.rs checks that the two agree). No imports and no
// globals: Node imports it as it is.

/**
 * The policy's numbers. A shard may fail `retries` times in a row; the wait before retry `n` is
 * `backoffStartMs · 2^(n-1)`, at most `backoffCapMs`; an attempt that moved `resetBytes` or more
 * before it failed starts the count again, so a long download over a connection that drops now
 * and then still finishes.
 */
export const RETRY_POLICY = Object.freeze({
  backoffStartMs: 100,
  backoffCapMs: 2000,
  resetBytes: 1024 * 1024,
  retries: 5,
});

/**
 * Whether an HTTP status is worth another try: 408 Request Timeout, 425 Too Early, 429 Too Many
 * Requests and every 5xx. Other errors (404, 403, 416...) will not change by asking again.
 * @param {number} status
 * @returns {boolean}
 */
export function isRetryableStatus(status) {
  return status === 408 || status === 425 || status === 429 || status >= 500;
}

/**
 * Milliseconds to wait before retry `attempt` (1 for the first retry; 0 waits as long as 1).
 * @param {number} attempt
 * @returns {number}
 */
export function backoffMs(attempt) {
  return Math.min(RETRY_POLICY.backoffCapMs, RETRY_POLICY.backoffStartMs * 2 ** Math.max(0, attempt - 1));
}
