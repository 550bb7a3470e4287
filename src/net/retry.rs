//! When a failed download is tried again, and how long to wait first: the one definition on the
//! Rust side. The npm package has its own in `www/package/src/retry.js` (the browser fetches in
//! JS, without the wasm); `tests/net.rs` checks that the two agree.

use std::time::Duration;

/// The retry policy's numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Failed attempts allowed in a row per request (the default of `--retries`).
    pub retries: u32,
    /// The wait before the first retry; each further retry waits twice as long...
    pub backoff_start: Duration,
    /// ...up to this.
    pub backoff_cap: Duration,
    /// An attempt that moved this much before it failed resets the count, so a long download
    /// over a connection that drops now and then still finishes.
    pub reset_bytes: u64,
}

pub const RETRY_POLICY: RetryPolicy = RetryPolicy {
    retries: 5,
    backoff_start: Duration::from_millis(100),
    backoff_cap: Duration::from_secs(2),
    reset_bytes: 1 << 20,
};

impl RetryPolicy {
    /// The wait before retry `attempt` (1 for the first; 0 waits as long as 1).
    pub fn backoff(&self, attempt: u32) -> Duration {
        self.backoff_start.saturating_mul(1 << attempt.saturating_sub(1).min(16)).min(self.backoff_cap)
    }
}

/// Whether an HTTP status is worth another try: 408 Request Timeout, 425 Too Early, 429 Too Many
/// Requests and every 5xx. Other errors (404, 403, 416...) will not change by asking again.
pub fn is_retryable_status(status: u16) -> bool {
    status == 408 || status == 425 || status == 429 || status >= 500
}

#[cfg(test)]
mod tests {
    use super::RETRY_POLICY;

    #[test]
    fn backoff_doubles_to_a_cap() {
        let ms: Vec<u128> = (1..=7).map(|a| RETRY_POLICY.backoff(a).as_millis()).collect();
        assert_eq!(ms, [100, 200, 400, 800, 1600, 2000, 2000]);
        assert_eq!(RETRY_POLICY.backoff(100).as_millis(), 2000);
    }
}
