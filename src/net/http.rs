//! One file over HTTP: probe its size and validators, then download it into a `.part` file that
//! a later attempt (or a later run) resumes with `Range` + `If-Range`.

use super::retry::{is_retryable_status, RETRY_POLICY};
use super::{io_err, NetError, NetOptions, ProgressLine, Remote};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;
use ureq::http::{HeaderMap, Response, StatusCode};

fn header(h: &HeaderMap, name: &str) -> Option<String> {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

fn content_length(h: &HeaderMap) -> Option<u64> {
    header(h, "content-length").and_then(|s| s.parse().ok())
}

/// `bytes START-END/TOTAL` → (START, END, TOTAL); TOTAL may be `*` (None).
fn content_range(h: &HeaderMap) -> Option<(u64, u64, Option<u64>)> {
    let v = header(h, "content-range")?;
    let v = v.strip_prefix("bytes")?.trim_start();
    let (range, total) = v.split_once('/')?;
    let (a, b) = range.split_once('-')?;
    Some((
        a.trim().parse().ok()?,
        b.trim().parse().ok()?,
        total.trim().parse().ok(),
    ))
}

fn reason(status: StatusCode) -> String {
    status
        .canonical_reason()
        .map(|r| format!(" {r}"))
        .unwrap_or_default()
}

fn status_error(method: &'static str, url: &str, status: StatusCode, detail: String) -> NetError {
    NetError::Status {
        method,
        url: url.to_string(),
        status: status.as_u16(),
        reason: reason(status),
        detail,
    }
}

/// What went wrong in one attempt, and whether another may help.
struct Failure {
    message: String,
    status: Option<u16>,
}

pub(super) struct Client {
    agent: ureq::Agent,
    retries: u32,
}

impl Client {
    pub(super) fn new(opts: &NetOptions) -> Self {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(30)))
            .timeout_per_read(Some(opts.read_timeout))
            .user_agent(concat!("llama-webgpu/", env!("CARGO_PKG_VERSION")))
            .build();
        Client {
            agent: config.into(),
            retries: opts.retries,
        }
    }

    /// HEAD: the size and validators of `url` (a `Range: bytes=0-0` GET when HEAD gives no
    /// length). 404 and other final statuses fail at once; 5xx and transport errors are retried.
    pub(super) fn probe(&self, url: &str) -> Result<Remote, NetError> {
        let mut attempt = 0;
        loop {
            let failure = match self.agent.head(url).call() {
                Err(e) => Failure {
                    message: format!("HEAD {url}: {e}"),
                    status: None,
                },
                Ok(res) if res.status().is_success() => {
                    let h = res.headers();
                    let mut remote = Remote {
                        url: url.to_string(),
                        size: 0,
                        etag: header(h, "etag"),
                        last_modified: header(h, "last-modified"),
                    };
                    match content_length(h) {
                        Some(n) => remote.size = n,
                        None => remote.size = self.size_by_range(url)?,
                    }
                    return Ok(remote);
                }
                Ok(res) if is_retryable_status(res.status().as_u16()) => Failure {
                    message: status_error("HEAD", url, res.status(), String::new()).to_string(),
                    status: Some(res.status().as_u16()),
                },
                Ok(res) => return Err(status_error("HEAD", url, res.status(), String::new())),
            };
            attempt += 1;
            if attempt > self.retries {
                return Err(NetError::ProbeFailed {
                    url: url.to_string(),
                    retries: self.retries,
                    status: failure.status,
                    last: failure.message,
                });
            }
            std::thread::sleep(RETRY_POLICY.backoff(attempt));
        }
    }

    fn size_by_range(&self, url: &str) -> Result<u64, NetError> {
        let no_length = || NetError::NoLength {
            method: "HEAD",
            url: url.to_string(),
        };
        let res = self
            .agent
            .get(url)
            .header("Range", "bytes=0-0")
            .call()
            .map_err(|_| no_length())?;
        match res.status().as_u16() {
            206 => content_range(res.headers())
                .and_then(|r| r.2)
                .ok_or_else(no_length),
            200 => content_length(res.headers()).ok_or_else(no_length),
            _ => Err(status_error("GET", url, res.status(), String::new())),
        }
    }

    /// Downloads `remote` into `part`, resuming what is there when `meta` shows it is the same
    /// file. Returns the validators of the bytes on disk (they change if the file did).
    pub(super) fn download(
        &self,
        probed: &Remote,
        part: &Path,
        meta: &Path,
        progress: &mut ProgressLine,
    ) -> Result<Remote, NetError> {
        let url = probed.url.as_str();
        let saved: Option<Remote> = std::fs::read(meta)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(part)
            .map_err(|e| io_err(part, e))?;
        let mut have = file.metadata().map_err(|e| io_err(part, e))?.len();
        let mut remote = probed.clone();
        match saved {
            Some(s) if s.url == url && s.same_file(probed) && have <= probed.size => {
                if have > 0 {
                    progress.note(&format!("resuming at byte {have} of {}", probed.size));
                    progress.resume(have);
                }
            }
            _ => {
                if have > 0 {
                    progress.note(&format!(
                        "{} holds {have} bytes of another version of the file: starting over",
                        part.display()
                    ));
                }
                truncate(&file, part)?;
                have = 0;
            }
        }
        save_meta(meta, &remote)?;

        let mut attempt = 0u32;
        loop {
            if have >= remote.size {
                break;
            }
            let started_at = have;
            let result = self.attempt(&mut remote, &mut file, part, meta, &mut have, progress);
            let failure = match result {
                Ok(()) => continue,
                Err(Attempt::Fatal(e)) => return Err(e),
                Err(Attempt::Retry(f)) => f,
            };
            if have >= remote.size {
                break;
            }
            if have.saturating_sub(started_at) >= RETRY_POLICY.reset_bytes {
                attempt = 0;
            }
            attempt += 1;
            if attempt > self.retries {
                return Err(NetError::DownloadFailed {
                    url: url.to_string(),
                    retries: self.retries,
                    at: have,
                    total: remote.size,
                    status: failure.status,
                    last: failure.message,
                });
            }
            let wait = RETRY_POLICY.backoff(attempt);
            progress.note(&format!(
                "{}; retrying in {} ms from byte {have}",
                failure.message,
                wait.as_millis()
            ));
            std::thread::sleep(wait);
        }
        file.sync_data().map_err(|e| io_err(part, e))?;
        Ok(remote)
    }

    /// One GET from byte `have`: appends what arrives to `file` and advances `have`.
    fn attempt(
        &self,
        remote: &mut Remote,
        file: &mut File,
        part: &Path,
        meta: &Path,
        have: &mut u64,
        progress: &mut ProgressLine,
    ) -> Result<(), Attempt> {
        let url = remote.url.clone();
        let retry =
            |message: String, status: Option<u16>| Attempt::Retry(Failure { message, status });
        let mut req = self.agent.get(&url);
        if *have > 0 {
            req = req.header("Range", format!("bytes={have}-"));
            if let Some(v) = remote.validator() {
                req = req.header("If-Range", v);
            }
        }
        let res: Response<ureq::Body> = match req.call() {
            Ok(r) => r,
            Err(e) => return Err(retry(format!("GET {url}: {e}"), None)),
        };
        let status = res.status();
        let h = res.headers().clone();
        let fresh = Remote {
            url: url.clone(),
            size: remote.size,
            etag: header(&h, "etag"),
            last_modified: header(&h, "last-modified"),
        };
        // Body bytes to drop before appending (a 200 answer to a Range request).
        let mut skip = 0u64;
        match status.as_u16() {
            206 if *have > 0 => {
                let Some((start, _end, total)) = content_range(&h) else {
                    return Err(Attempt::Fatal(NetError::BadRange {
                        url,
                        asked: *have,
                        got: header(&h, "content-range").unwrap_or_else(|| "(none)".into()),
                    }));
                };
                if start != *have {
                    return Err(Attempt::Fatal(NetError::BadRange {
                        url,
                        asked: *have,
                        got: header(&h, "content-range").unwrap_or_default(),
                    }));
                }
                let changed = total.is_some_and(|t| t != remote.size)
                    || (fresh.etag.is_some() && remote.etag.is_some() && fresh.etag != remote.etag);
                if changed {
                    // Only possible when the server ignores If-Range: the file changed under us.
                    progress.note(&format!("{url} changed on the server: starting over"));
                    truncate(file, part).map_err(Attempt::Fatal)?;
                    *have = 0;
                    *remote = Remote {
                        size: total.unwrap_or(remote.size),
                        ..fresh
                    };
                    save_meta(meta, remote).map_err(Attempt::Fatal)?;
                    return Err(retry(format!("{url} changed on the server"), Some(206)));
                }
            }
            200 => {
                let len = content_length(&h);
                let answer = Remote {
                    size: len.unwrap_or(remote.size),
                    ..fresh
                };
                if remote.same_file(&answer) {
                    // A Range the server ignored (or an If-Range it did not match, for a weak
                    // validator): the bytes we have are still right, so skip them.
                    skip = *have;
                } else if !remote.same_version(&answer) {
                    if *have > 0 {
                        progress.note(&format!("{url} changed on the server: starting over"));
                        truncate(file, part).map_err(Attempt::Fatal)?;
                        *have = 0;
                    }
                    *remote = answer;
                    save_meta(meta, remote).map_err(Attempt::Fatal)?;
                } else {
                    return Err(Attempt::Fatal(NetError::LengthMismatch {
                        url: url.clone(),
                        detail: format!(
                            "GET {url} announces {} bytes, expected {}",
                            answer.size, remote.size
                        ),
                    }));
                }
            }
            s if is_retryable_status(s) => {
                return Err(retry(
                    status_error("GET", &url, status, String::new()).to_string(),
                    Some(s),
                ))
            }
            416 => {
                return Err(Attempt::Fatal(status_error(
                    "GET",
                    &url,
                    status,
                    if *have > 0 {
                        format!(
                            " for bytes={have}- of the {} bytes expected: the file changed size on the server; delete {} to start over",
                            remote.size,
                            part.display()
                        )
                    } else {
                        String::new()
                    },
                )))
            }
            _ => {
                return Err(Attempt::Fatal(status_error(
                    "GET",
                    &url,
                    status,
                    String::new(),
                )))
            }
        }
        if status.as_u16() == 206 {
            if let Some(len) = content_length(&h) {
                if len != remote.size - *have {
                    return Err(Attempt::Fatal(NetError::LengthMismatch {
                        url: url.clone(),
                        detail: format!(
                            "GET {url} announces {len} bytes from byte {have}, expected {}",
                            remote.size - *have
                        ),
                    }));
                }
            }
        }

        // Stream the body onto the end of the .part file.
        let start_len = *have;
        let mut reader = res.into_body().into_reader();
        let mut buf = vec![0u8; 1 << 20];
        let cut = loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break None,
                Ok(n) => n,
                Err(e) => break Some(e.to_string()),
            };
            let mut piece = &buf[..n];
            if skip > 0 {
                let k = (skip as usize).min(piece.len());
                skip -= k as u64;
                piece = &piece[k..];
            }
            if piece.is_empty() {
                continue;
            }
            if *have + piece.len() as u64 > remote.size {
                // More than announced: none of this answer can be trusted.
                file.set_len(start_len)
                    .map_err(|e| Attempt::Fatal(io_err(part, e)))?;
                *have = start_len;
                return Err(Attempt::Fatal(NetError::LengthMismatch {
                    url: url.clone(),
                    detail: format!(
                        "{url} sent more than the {} bytes it announced",
                        remote.size
                    ),
                }));
            }
            file.write_all(piece)
                .map_err(|e| Attempt::Fatal(io_err(part, e)))?;
            *have += piece.len() as u64;
            progress.at(*have);
        };
        if *have < remote.size {
            let why = cut.unwrap_or_else(|| "the connection closed early".into());
            return Err(retry(
                format!("GET {url}: {why} at byte {have} of {}", remote.size),
                Some(status.as_u16()),
            ));
        }
        Ok(())
    }
}

enum Attempt {
    Retry(Failure),
    Fatal(NetError),
}

fn truncate(file: &File, part: &Path) -> Result<(), NetError> {
    file.set_len(0).map_err(|e| io_err(part, e))
}

fn save_meta(meta: &Path, remote: &Remote) -> Result<(), NetError> {
    let json = serde_json::to_vec_pretty(remote).expect("metadata serializes");
    std::fs::write(meta, json).map_err(|e| io_err(meta, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range_parses() {
        let mut h = HeaderMap::new();
        h.insert("content-range", "bytes 10-99/100".parse().unwrap());
        assert_eq!(content_range(&h), Some((10, 99, Some(100))));
        h.insert("content-range", "bytes 0-0/*".parse().unwrap());
        assert_eq!(content_range(&h), Some((0, 0, None)));
        h.insert("content-range", "items 0-1/2".parse().unwrap());
        assert_eq!(content_range(&h), None);
    }
}
