//! Model URLs for the CLI: an `http(s)://` GGUF — or the first (any) shard of a gguf-split set,
//! which expands to all of them — is downloaded into a cache directory and then opened like a
//! local file. Native only, behind the `cli` feature; the browser has its own fetch layer
//! (`www/package/src/fetch.js`) with the same behaviour and error codes.
//!
//! Per shard: `NAME.part` grows as bytes arrive and survives an interruption (a cut connection,
//! a killed process); the next attempt resumes it with `Range` + `If-Range` (ETag, else
//! Last-Modified), so a file that changed on the server starts over instead of being spliced.
//! Connection cuts, stalls and 408/425/429/5xx answers are retried with backoff (100 ms doubling
//! to 2 s; an attempt that moved 1 MiB resets the budget). A finished shard is checked — its
//! length against Content-Length and against what its GGUF header implies, its `split.*` keys
//! against its name — and only then renamed to `NAME`. A complete file is used as it is, without
//! asking the server again, so a cached model loads offline.

mod http;
pub mod retry;

use crate::gguf::{shard_name, split_name_parts, GgufError, HeaderParser, Progress};
use serde::{Deserialize, Serialize};
use std::io::{IsTerminal, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A download failure. `code()` is `NETWORK_ERROR` for all but `Io` (`IO_ERROR`, the cache
/// directory), `BadUrl` (`INVALID_ARGUMENT`), as in the JS package, and `Gguf` (the GGUF error's).
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The server answered with an error status that is not worth retrying (404, 416, 403, ...).
    #[error("{method} {url} → HTTP {status}{reason}{detail}")]
    Status {
        method: &'static str,
        url: String,
        status: u16,
        /// " Not Found" (with its leading space) or empty.
        reason: String,
        /// Extra context (with its leading separator) or empty.
        detail: String,
    },
    /// Retries ran out while probing (HEAD) a shard.
    #[error("{last}; gave up after {retries} retries")]
    ProbeFailed {
        url: String,
        retries: u32,
        status: Option<u16>,
        last: String,
    },
    /// Retries ran out while downloading a shard; the `.part` file keeps what arrived.
    #[error("download of {url} failed after {retries} retries at byte {at} of {total}: {last}")]
    DownloadFailed {
        url: String,
        retries: u32,
        at: u64,
        total: u64,
        status: Option<u16>,
        last: String,
    },
    /// The server gave no size for a shard (no Content-Length, no Content-Range).
    #[error("{method} {url} gave no Content-Length: cannot tell the size of the shard")]
    NoLength { method: &'static str, url: String },
    /// A body longer than announced, or an announced length that contradicts the probed size.
    #[error("length mismatch: {detail}")]
    LengthMismatch { url: String, detail: String },
    /// A 206 answer for another range than the one asked for.
    #[error("GET {url} with Range bytes={asked}- answered Content-Range {got}")]
    BadRange {
        url: String,
        asked: u64,
        got: String,
    },
    /// Reading or writing the cache directory.
    #[error("model cache {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("bad model URL '{url}': {why}")]
    BadUrl { url: String, why: String },
    /// A downloaded shard that is not the GGUF file it should be (truncated, malformed, or
    /// another shard than its name says).
    #[error(transparent)]
    Gguf(#[from] GgufError),
}

impl NetError {
    pub fn code(&self) -> &'static str {
        match self {
            NetError::Io { .. } => "IO_ERROR",
            NetError::BadUrl { .. } => "INVALID_ARGUMENT",
            NetError::Gguf(e) => e.code(),
            _ => "NETWORK_ERROR",
        }
    }

    /// The HTTP status behind the failure, if there was one.
    pub fn status(&self) -> Option<u16> {
        match self {
            NetError::Status { status, .. } => Some(*status),
            NetError::ProbeFailed { status, .. } | NetError::DownloadFailed { status, .. } => {
                *status
            }
            _ => None,
        }
    }
}

fn io_err(path: &Path, source: std::io::Error) -> NetError {
    NetError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Where and how to download.
#[derive(Clone, Debug)]
pub struct NetOptions {
    /// Downloads go to `cache_dir/HOST/KEY/NAME` (KEY: a hash of the URL's directory and query).
    pub cache_dir: PathBuf,
    /// Failed attempts allowed in a row per request (backoff 100 ms doubling, cap 2 s).
    pub retries: u32,
    /// Longest wait for the next bytes of an answer before the attempt counts as cut.
    pub read_timeout: Duration,
    /// Progress lines on stderr.
    pub progress: bool,
}

impl Default for NetOptions {
    fn default() -> Self {
        NetOptions {
            cache_dir: default_cache_dir(),
            retries: retry::RETRY_POLICY.retries,
            read_timeout: Duration::from_secs(30),
            progress: true,
        }
    }
}

/// `$LLAMA_WEBGPU_CACHE`, else `$XDG_CACHE_HOME/llama-webgpu`, else `~/.cache/llama-webgpu`
/// (`%LOCALAPPDATA%\llama-webgpu` on Windows).
pub fn default_cache_dir() -> PathBuf {
    let var = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(d) = var("LLAMA_WEBGPU_CACHE") {
        return d;
    }
    if let Some(d) = var("XDG_CACHE_HOME") {
        return d.join("llama-webgpu");
    }
    if cfg!(windows) {
        if let Some(d) = var("LOCALAPPDATA") {
            return d.join("llama-webgpu");
        }
    }
    if let Some(h) = var("HOME").or_else(|| var("USERPROFILE")) {
        return h.join(".cache").join("llama-webgpu");
    }
    std::env::temp_dir().join("llama-webgpu-cache")
}

/// Whether a `-m` argument is a URL to download rather than a path.
pub fn is_url(s: &str) -> bool {
    let l = s.get(..8).unwrap_or(s).to_ascii_lowercase();
    l.starts_with("http://") || l.starts_with("https://")
}

/// One shard of the set: where it comes from and where it lives in the cache.
#[derive(Clone, Debug)]
struct ShardLoc {
    url: String,
    path: PathBuf,
}

/// The shards a URL stands for (all of a gguf-split set, or the one file) and their cache paths.
fn shard_locations(url: &str, cache_dir: &Path) -> Result<Vec<ShardLoc>, NetError> {
    let bad = |why: &str| NetError::BadUrl {
        url: url.to_string(),
        why: why.to_string(),
    };
    // The fragment is never sent.
    let url = url.split('#').next().unwrap_or(url);
    let scheme_end = url.find("://").ok_or_else(|| bad("no scheme"))? + 3;
    let rest = &url[scheme_end..];
    let host_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let host = &rest[..host_end];
    if host.is_empty() {
        return Err(bad("no host"));
    }
    let (path_part, query) = match url.find('?') {
        Some(i) => (&url[..i], &url[i..]),
        None => (url, ""),
    };
    let name = path_part[scheme_end + host_end..]
        .rsplit('/')
        .next()
        .unwrap_or("");
    if name.is_empty() {
        return Err(bad("the path names no file"));
    }
    let base = &path_part[..path_part.len() - name.len()];
    let dir = cache_dir.join(sanitize(host)).join(format!(
        "{:016x}",
        fnv1a(&format!("{}{query}", base.to_ascii_lowercase()))
    ));
    let urls: Vec<String> = match split_name_parts(url) {
        Some((prefix, _, count, q)) => (0..count)
            .map(|i| format!("{}{q}", shard_name(&prefix, i, count)))
            .collect(),
        None => vec![url.to_string()],
    };
    Ok(urls
        .into_iter()
        .map(|u| {
            let file = u[..u.find('?').unwrap_or(u.len())]
                .rsplit('/')
                .next()
                .unwrap_or("")
                .to_string();
            ShardLoc {
                path: dir.join(sanitize(&file)),
                url: u,
            }
        })
        .collect())
}

/// A file-name-safe version of `s`: every byte outside `[A-Za-z0-9._-]` becomes `_`.
fn sanitize(s: &str) -> String {
    let out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.starts_with('.') {
        format!("_{out}")
    } else {
        out
    }
}

/// 64-bit FNV-1a: a stable name for a URL's directory (std's hasher may change between releases).
fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

/// What the server said about a file; kept beside a `.part` to resume it safely.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Remote {
    pub url: String,
    pub size: u64,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
}

impl Remote {
    /// The `If-Range` validator: a strong ETag, else Last-Modified.
    fn validator(&self) -> Option<&str> {
        match &self.etag {
            Some(e) if !e.starts_with("W/") => Some(e),
            _ => self.last_modified.as_deref(),
        }
    }

    /// Whether a fresh answer has the same validators (or none to contradict ours).
    fn same_version(&self, other: &Remote) -> bool {
        match (&self.etag, &other.etag) {
            (Some(a), Some(b)) => a == b,
            _ => match (&self.last_modified, &other.last_modified) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            },
        }
    }

    /// Whether a fresh answer describes the same file: same size and version.
    fn same_file(&self, other: &Remote) -> bool {
        self.size == other.size && self.same_version(other)
    }
}

fn part_path(p: &Path) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(".part");
    PathBuf::from(s)
}

fn meta_path(p: &Path) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(".json");
    PathBuf::from(s)
}

/// Downloads (or finds in the cache) every shard `url` stands for and returns the local path of
/// the first, ready for [`crate::gguf::GgufFile::open`].
pub fn fetch_model(url: &str, opts: &NetOptions) -> Result<PathBuf, NetError> {
    let shards = shard_locations(url, &opts.cache_dir)?;
    let count = shards.len() as u32;
    let first = shards[0].path.clone();
    let missing: Vec<(u32, &ShardLoc)> = (0..count)
        .zip(&shards)
        .filter(|(_, s)| !s.path.is_file())
        .collect();
    if missing.is_empty() {
        return Ok(first);
    }
    let dir = first.parent().expect("cache paths have a directory");
    std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
    let client = http::Client::new(opts);
    // Every missing shard is probed before any downloads: a 404 fails at once.
    let mut remotes = Vec::with_capacity(missing.len());
    for (_, s) in &missing {
        remotes.push(client.probe(&s.url)?);
    }
    let mut progress = ProgressLine::new(opts.progress, remotes.iter().map(|r| r.size).sum());
    for ((index, shard), remote) in missing.iter().zip(remotes) {
        let part = part_path(&shard.path);
        let meta = meta_path(&part);
        progress.note(&format!(
            "downloading {} ({} bytes) → {}",
            shard.url,
            remote.size,
            shard.path.display()
        ));
        let remote = client.download(&remote, &part, &meta, &mut progress)?;
        if let Err(e) = verify_shard(&part, remote.size, *index, count, &shard.url) {
            // The bytes are what the server sent, but not a usable shard: keep nothing that a
            // later run would take for a finished download.
            let _ = std::fs::remove_file(&part);
            let _ = std::fs::remove_file(&meta);
            return Err(e);
        }
        std::fs::rename(&part, &shard.path).map_err(|e| io_err(&shard.path, e))?;
        let _ = std::fs::rename(&meta, meta_path(&shard.path));
        progress.shard_done();
    }
    progress.finish();
    Ok(first)
}

/// A downloaded shard must be exactly as long as announced and as its GGUF header implies (the
/// end of its last tensor, plus at most alignment padding), and be the shard its name says.
fn verify_shard(part: &Path, size: u64, index: u32, count: u32, url: &str) -> Result<(), NetError> {
    let gguf_io = |e| GgufError::Io {
        path: part.display().to_string(),
        source: e,
    };
    let mut f = std::fs::File::open(part).map_err(gguf_io)?;
    let len = f.metadata().map_err(gguf_io)?.len();
    if len != size {
        return Err(NetError::LengthMismatch {
            url: url.to_string(),
            detail: format!("{url} is {size} bytes, but {len} arrived"),
        });
    }
    let header = match read_header(&mut f, Some(len)) {
        // Checked against the length below, with a message that says so.
        Err(GgufError::TensorOutOfRange { .. }) => {
            f.seek(SeekFrom::Start(0)).map_err(gguf_io)?;
            read_header(&mut f, None)?
        }
        r => r?,
    };
    let data_end = header.expected_file_len();
    if len < data_end {
        return Err(GgufError::Truncated {
            what: format!("{url}: tensor data (the file is shorter than its header says)"),
            offset: len,
            needed: data_end - len,
        }
        .into());
    }
    header.validate_layout(Some(len))?;
    let extra = len.saturating_sub(data_end);
    if extra >= header.alignment.max(1) {
        return Err(GgufError::BadTensor {
            tensor: format!("({url})"),
            detail: format!(
                "{extra} bytes follow the last tensor, which ends at byte {data_end}: the file is longer than its header says"
            ),
        }
        .into());
    }
    if count > 1 {
        match header.split()? {
            Some(s) if s.index == index && s.count == count => {}
            other => {
                return Err(GgufError::Split(format!(
                    "{url} should be shard {} of {count}, but its split keys say {}",
                    index + 1,
                    match other {
                        Some(s) => format!("shard {} of {}", s.index + 1, s.count),
                        None => "nothing (it is not a split shard)".into(),
                    }
                ))
                .into());
            }
        }
    }
    Ok(())
}

fn read_header(f: &mut std::fs::File, len: Option<u64>) -> Result<crate::gguf::GgufHeader, GgufError> {
    let mut parser = HeaderParser::new(len);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| GgufError::Io {
            path: "(downloaded shard)".into(),
            source: e,
        })?;
        if n == 0 {
            return Ok(*parser.finish()?);
        }
        if let Progress::Done(h) = parser.feed(&buf[..n])? {
            return Ok(*h);
        }
    }
}

/// Download progress on stderr: a line rewritten in place on a terminal, else a line every few
/// seconds.
pub(crate) struct ProgressLine {
    on: bool,
    tty: bool,
    total: u64,
    done: u64,
    shard: u64,
    /// Bytes that were already on disk (resumed), left out of the speed.
    resumed: u64,
    t0: Instant,
    last: Option<Instant>,
}

impl ProgressLine {
    fn new(on: bool, total: u64) -> Self {
        let tty = std::io::stderr().is_terminal();
        ProgressLine {
            on,
            tty,
            total,
            done: 0,
            shard: 0,
            resumed: 0,
            t0: Instant::now(),
            // A log (not a terminal) gets its first line after a while, not at the first byte.
            last: (!tty).then(Instant::now),
        }
    }

    /// A message on its own line.
    pub(crate) fn note(&mut self, msg: &str) {
        if self.on {
            let mut e = std::io::stderr().lock();
            if self.tty && self.last.is_some() {
                let _ = write!(e, "\r\x1b[K");
            }
            let _ = writeln!(e, "{msg}");
            if self.tty {
                // Redraw the progress line under the message at the next chance.
                self.last = None;
            }
        }
    }

    /// The current shard has `bytes` on disk (resumed ones included).
    pub(crate) fn at(&mut self, bytes: u64) {
        self.shard = bytes;
        let every = Duration::from_millis(if self.tty { 200 } else { 2000 });
        if self.on && self.last.is_none_or(|t| t.elapsed() >= every) {
            self.print(false);
        }
    }

    /// The current shard starts with `bytes` already on disk.
    pub(crate) fn resume(&mut self, bytes: u64) {
        self.resumed += bytes;
        self.shard = bytes;
    }

    fn shard_done(&mut self) {
        self.done += self.shard;
        self.shard = 0;
    }

    fn print(&mut self, last: bool) {
        let now = self.done + self.shard;
        let s = self.t0.elapsed().as_secs_f64().max(1e-3);
        let line = format!(
            "{}{:.1} / {:.1} MB ({:.0}%) in {s:.1} s · {:.1} MB/s",
            if last { "downloaded " } else { "" },
            now as f64 / 1e6,
            self.total as f64 / 1e6,
            100.0 * now as f64 / self.total.max(1) as f64,
            now.saturating_sub(self.resumed) as f64 / 1e6 / s
        );
        let mut e = std::io::stderr().lock();
        let _ = if self.tty {
            write!(e, "\r\x1b[K{line}{}", if last { "\n" } else { "" })
        } else {
            writeln!(e, "{line}")
        };
        self.last = Some(Instant::now());
    }

    fn finish(&mut self) {
        if self.on {
            self.print(true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_expand_to_their_shards_in_one_cache_directory() {
        let c = Path::new("/c");
        let s =
            shard_locations("https://h.example:8443/a/b/M-00002-of-00003.gguf?x=1#f", c).unwrap();
        assert_eq!(s.len(), 3);
        assert_eq!(
            s[0].url,
            "https://h.example:8443/a/b/M-00001-of-00003.gguf?x=1"
        );
        assert_eq!(
            s[2].url,
            "https://h.example:8443/a/b/M-00003-of-00003.gguf?x=1"
        );
        let dir = s[0].path.parent().unwrap();
        assert!(dir.starts_with("/c/h.example_8443"));
        assert!(s.iter().all(|x| x.path.parent().unwrap() == dir));
        assert_eq!(s[1].path.file_name().unwrap(), "M-00002-of-00003.gguf");
        // Another query or directory is another cache entry.
        let t = shard_locations("https://h.example:8443/a/b/M-00001-of-00003.gguf", c).unwrap();
        assert_ne!(t[0].path, s[0].path);
        let one = shard_locations("http://h/m%20x.gguf", c).unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].path.file_name().unwrap(), "m_20x.gguf");
        assert!(shard_locations("http://h/", c).is_err());
        assert!(shard_locations("http:///x.gguf", c).is_err());
        assert!(is_url("HTTPS://x/y.gguf") && !is_url("./http:/x") && !is_url("ht"));
    }

    #[test]
    fn validators() {
        let r = |etag: Option<&str>, lm: Option<&str>, size| Remote {
            url: String::new(),
            size,
            etag: etag.map(String::from),
            last_modified: lm.map(String::from),
        };
        assert_eq!(r(Some("\"a\""), Some("d"), 1).validator(), Some("\"a\""));
        assert_eq!(r(Some("W/\"a\""), Some("d"), 1).validator(), Some("d"));
        assert!(r(Some("\"a\""), None, 1).same_file(&r(Some("\"a\""), None, 1)));
        assert!(!r(Some("\"a\""), None, 1).same_file(&r(Some("\"b\""), None, 1)));
        assert!(!r(None, None, 1).same_file(&r(None, None, 2)));
        assert!(!r(None, Some("x"), 1).same_file(&r(None, Some("y"), 1)));
    }
}
