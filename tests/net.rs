#![cfg(not(target_arch = "wasm32"))]
//! Model URLs in the CLI (`-m http://...`), against `tests/web/fault-server.mjs` (the static server with fault injection):
//! connection cuts resume with Range, 404 / 500 / 416 are typed errors naming URL and status,
//! bodies and files shorter or longer than announced are refused, a mixed-up shard set is
//! BAD_SPLIT, a killed download resumes from its `.part` file, and a cached model loads offline.
//! The served model is SmolLM2 cut into three gguf-split shards by the CLI's `split`.

mod common;

use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const SET: [&str; 3] = [
    "x-00001-of-00003.gguf",
    "x-00002-of-00003.gguf",
    "x-00003-of-00003.gguf",
];

/// The served tree, made once per run under Cargo's target tmp dir:
/// `set/` the three shards; `mixed/` shard 2 taken from a two-shard split of the same model;
/// `mixed1/` a first shard that says it is 1 of 2; `short/` and `long/` a first shard 1000 bytes
/// short of / 4096 bytes longer than its header says.
fn fixtures() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("net-fixtures");
        let _ = std::fs::remove_dir_all(&root);
        for d in ["set", "y", "mixed", "mixed1", "short", "long"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        let model = common::smollm2();
        for (dir, prefix, max) in [("set", "x", "40M"), ("y", "y", "60M")] {
            let out = cli(&[
                "split",
                model.to_str().unwrap(),
                root.join(dir).join(prefix).to_str().unwrap(),
                "--split-max-size",
                max,
            ]);
            assert!(
                out.status.success(),
                "split: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let set = |i: usize| root.join("set").join(SET[i]);
        assert!(set(2).exists() && !root.join("set/x-00001-of-00004.gguf").exists());
        let link = |from: &Path, to: &str| std::fs::hard_link(from, root.join(to)).unwrap();
        link(&set(0), "mixed/x-00001-of-00003.gguf");
        link(
            &root.join("y/y-00002-of-00002.gguf"),
            "mixed/x-00002-of-00003.gguf",
        );
        link(&set(2), "mixed/x-00003-of-00003.gguf");
        link(
            &root.join("y/y-00001-of-00002.gguf"),
            "mixed1/x-00001-of-00003.gguf",
        );
        let first = std::fs::read(set(0)).unwrap();
        std::fs::write(
            root.join("short").join(SET[0]),
            &first[..first.len() - 1000],
        )
        .unwrap();
        let mut longer = first.clone();
        longer.extend_from_slice(&[0u8; 4096]);
        std::fs::write(root.join("long").join(SET[0]), longer).unwrap();
        for d in ["mixed1", "short", "long"] {
            link(&set(1), &format!("{d}/{}", SET[1]));
            link(&set(2), &format!("{d}/{}", SET[2]));
        }
        root
    })
}

fn cli(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_llama-webgpu"))
        .args(args)
        .output()
        .expect("run llama-webgpu")
}

/// `tests/web/fault-server.mjs` on a free port over the fixtures; killed on drop.
struct Server {
    child: Child,
    url: String,
}

impl Server {
    fn start(root: &Path) -> Server {
        let mut child = Command::new("node")
            .arg(common::root().join("tests/web/fault-server.mjs"))
            .args(["--root", root.to_str().unwrap(), "--port", "0"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("node tests/web/fault-server.mjs");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line
            .trim()
            .rsplit(" at ")
            .next()
            .filter(|u| u.starts_with("http://"))
            .unwrap_or_else(|| panic!("fault-server.mjs said {line:?}"))
            .to_string();
        Server { child, url }
    }

    /// The URL of `path` (no leading slash) on this server.
    fn at(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    fn post(&self, path: &str, body: &Value) {
        ureq::post(self.at(path))
            .header("Content-Type", "application/json")
            .send(body.to_string())
            .unwrap();
    }

    fn faults(&self, f: Value) {
        self.post("__faults", &f);
    }

    fn clear(&self) {
        self.post("__faults/clear", &json!({}));
        self.post("__log/clear", &json!({}));
    }

    /// Logged requests for paths starting with `prefix`: {method, path, range, ifRange, status, bytes}.
    fn log(&self, prefix: &str) -> Vec<Value> {
        let text = ureq::get(self.at("__log"))
            .call()
            .unwrap()
            .body_mut()
            .read_to_string()
            .unwrap();
        let all: Vec<Value> = serde_json::from_str(&text).unwrap();
        all.into_iter()
            .filter(|e| e["path"].as_str().unwrap().starts_with(prefix))
            .collect()
    }

    fn gets(&self, path: &str) -> Vec<Value> {
        self.log(path)
            .into_iter()
            .filter(|e| e["method"] == "GET")
            .collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A fresh cache directory for one case.
fn cache(tag: &str) -> PathBuf {
    let d = fixtures().join(format!("cache-{tag}"));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// `info --json --backend cpu` on `url` with the cache `dir`, plus `extra` args.
fn info(url: &str, dir: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "info",
        "-m",
        url,
        "--json",
        "--backend",
        "cpu",
        "--cache-dir",
        dir.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    cli(&args)
}

fn ok(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON")
}

/// The `error [CODE]: message` line of a failed run.
fn err(out: &Output) -> String {
    assert!(
        !out.status.success(),
        "succeeded: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let e = String::from_utf8_lossy(&out.stderr);
    e.lines()
        .find(|l| l.starts_with("error ["))
        .unwrap_or_else(|| panic!("no error line in {e}"))
        .to_string()
}

/// Files under `dir`, recursively, as paths relative to it.
fn files(dir: &Path) -> Vec<String> {
    fn walk(d: &Path, base: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, base, out);
            } else {
                out.push(p.strip_prefix(base).unwrap().display().to_string());
            }
        }
    }
    let mut v = Vec::new();
    walk(dir, dir, &mut v);
    v.sort();
    v
}

/// The cached copy of `name` (one cache entry per test).
fn cached(dir: &Path, name: &str) -> PathBuf {
    let hits: Vec<String> = files(dir)
        .into_iter()
        .filter(|f| f.ends_with(&format!("/{name}")))
        .collect();
    assert_eq!(hits.len(), 1, "{name} in {:?}", files(dir));
    dir.join(&hits[0])
}

fn assert_same_bytes(a: &Path, b: &Path) {
    let (x, y) = (std::fs::read(a).unwrap(), std::fs::read(b).unwrap());
    assert!(
        x.len() == y.len() && x == y,
        "{} differs from {}",
        a.display(),
        b.display()
    );
}

fn from_byte(e: &Value) -> u64 {
    let r = e["range"]
        .as_str()
        .unwrap_or_else(|| panic!("no Range in {e}"));
    r.strip_prefix("bytes=")
        .and_then(|r| r.strip_suffix('-'))
        .unwrap()
        .parse()
        .unwrap()
}

fn size(p: &Path) -> u64 {
    std::fs::metadata(p).unwrap().len()
}

#[test]
fn cut_mid_shard_resumes_to_identical_bytes_and_output_then_loads_offline() {
    let root = fixtures();
    let srv = Server::start(root);
    let dir = cache("cut");
    let shard2 = "/set/x-00002-of-00003.gguf";
    srv.faults(json!({"cut": [
        {"path": shard2, "afterBytes": 5_000_000},
        {"path": shard2, "afterBytes": 7_000_000, "reset": true},
    ]}));
    // Any shard's URL stands for the set.
    let v = ok(&info(&srv.at("set/x-00003-of-00003.gguf"), &dir, &[]));
    assert_eq!(v["shards"].as_array().unwrap().len(), 3);
    for name in SET {
        assert_same_bytes(&cached(&dir, name), &root.join("set").join(name));
    }
    let gets = srv.gets(shard2);
    assert_eq!(gets.len(), 3, "{gets:?}");
    assert_eq!(
        (gets[0]["status"].as_u64(), gets[0]["range"].as_str()),
        (Some(200), None)
    );
    assert_eq!(gets[0]["bytes"], 5_000_000);
    // A FIN after the bytes: every one of them arrived.
    assert_eq!(gets[1]["range"], "bytes=5000000-");
    assert_eq!(gets[1]["status"], 206);
    assert!(
        gets[1]["ifRange"].as_str().unwrap().starts_with('"'),
        "If-Range carries the ETag"
    );
    // A reset may lose bytes in flight: the next request starts at or before the cut.
    let (a, b) = (from_byte(&gets[1]), from_byte(&gets[2]));
    assert!(b > a && b <= a + 7_000_000, "{a} → {b}");
    assert_eq!(
        gets[2]["bytes"].as_u64().unwrap(),
        size(&root.join("set").join(SET[1])) - b
    );
    // Nothing but the finished shards and their metadata is left.
    assert!(
        files(&dir).iter().all(|f| !f.ends_with(".part")),
        "{:?}",
        files(&dir)
    );

    // The same greedy tokens as from the local file.
    let gen = |m: &str| {
        let out = cli(&[
            "generate",
            "-m",
            m,
            "-p",
            "Once upon a time",
            "-n",
            "3",
            "--temp",
            "0",
            "--backend",
            "cpu",
            "--json",
            "--cache-dir",
            dir.to_str().unwrap(),
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let s = String::from_utf8(out.stdout).unwrap();
        serde_json::from_str::<Value>(s.lines().last().unwrap()).unwrap()["tokens"].clone()
    };
    let url = srv.at("set/x-00001-of-00003.gguf");
    assert_eq!(gen(&url), gen(common::smollm2().to_str().unwrap()));

    // A complete download is not fetched again, and loads with the server gone.
    srv.clear();
    ok(&info(&url, &dir, &[]));
    assert_eq!(srv.log("/").len(), 0, "{:?}", srv.log("/"));
    drop(srv);
    let v = ok(&info(&url, &dir, &[]));
    assert_eq!(v["n_params"], 134515008);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn http_errors_name_the_url_and_status() {
    let srv = Server::start(fixtures());
    let url = srv.at("set/x-00001-of-00003.gguf");
    let u = |i: usize| srv.at(&format!("set/{}", SET[i]));

    // 404 on a later shard: fails while probing, before any download.
    let dir = cache("404");
    srv.faults(
        json!({"status": [{"path": "/set/x-00002-of-00003.gguf", "code": 404, "times": -1}]}),
    );
    let e = err(&info(&url, &dir, &[]));
    assert_eq!(
        e,
        format!("error [NETWORK_ERROR]: HEAD {} → HTTP 404 Not Found", u(1))
    );
    assert!(srv.gets("/").is_empty());
    assert!(files(&dir).is_empty(), "{:?}", files(&dir));

    // A 503 probe and a 500 download are retried.
    let dir = cache("500-once");
    srv.clear();
    srv.faults(json!({"status": [
        {"path": "/set/x-00001-of-00003.gguf", "code": 503, "method": "HEAD"},
        {"path": "/set/x-00001-of-00003.gguf", "code": 500, "method": "GET"},
    ]}));
    ok(&info(&url, &dir, &[]));
    let statuses: Vec<(String, u64)> = srv
        .log("/set/x-00001")
        .iter()
        .map(|e| {
            (
                e["method"].as_str().unwrap().to_string(),
                e["status"].as_u64().unwrap(),
            )
        })
        .collect();
    let s = |m: &str, c| (m.to_string(), c);
    assert_eq!(
        statuses,
        [s("HEAD", 503), s("HEAD", 200), s("GET", 500), s("GET", 200)]
    );
    let _ = std::fs::remove_dir_all(&dir);

    // Persistent 500s: the retries run out.
    let dir = cache("500-head");
    srv.clear();
    srv.faults(
        json!({"status": [{"path": "/set/x-00003-of-00003.gguf", "code": 500, "times": -1}]}),
    );
    let e = err(&info(&url, &dir, &["--retries", "2"]));
    assert_eq!(e, format!("error [NETWORK_ERROR]: HEAD {} → HTTP 500 Internal Server Error; gave up after 2 retries", u(2)));
    assert_eq!(srv.log("/set/x-00003").len(), 3);

    let dir = cache("500-get");
    srv.clear();
    srv.faults(json!({"status": [{"path": "/set/x-00001-of-00003.gguf", "code": 500, "times": -1, "method": "GET"}]}));
    let e = err(&info(&url, &dir, &["--retries", "2"]));
    let total = size(&fixtures().join("set").join(SET[0]));
    assert_eq!(
        e,
        format!("error [NETWORK_ERROR]: download of {url} failed after 2 retries at byte 0 of {total}: GET {url} → HTTP 500 Internal Server Error")
    );
    assert_eq!(srv.gets("/set/").len(), 3);

    // A connection that always breaks.
    let dir = cache("cut-always");
    srv.clear();
    srv.faults(
        json!({"cut": [{"path": "/set/x-00001-of-00003.gguf", "afterBytes": 1000, "times": -1}]}),
    );
    let e = err(&info(&url, &dir, &["--retries", "2"]));
    assert!(e.starts_with(&format!("error [NETWORK_ERROR]: download of {url} failed after 2 retries at byte 3000 of {total}: GET {url}")), "{e}");
    assert_eq!(
        srv.gets("/set/")
            .iter()
            .map(from_byte_or_0)
            .collect::<Vec<_>>(),
        [0, 1000, 2000]
    );
    let _ = std::fs::remove_dir_all(&dir);

    // 416 is final, and names the URL and status.
    let dir = cache("416");
    srv.clear();
    srv.faults(
        json!({"status": [{"path": "/set/x-00001-of-00003.gguf", "code": 416, "method": "GET"}]}),
    );
    let e = err(&info(&url, &dir, &[]));
    assert_eq!(
        e,
        format!("error [NETWORK_ERROR]: GET {url} → HTTP 416 Range Not Satisfiable")
    );
    for tag in ["404", "500-head", "500-get", "416"] {
        let _ = std::fs::remove_dir_all(fixtures().join(format!("cache-{tag}")));
    }
}

fn from_byte_or_0(e: &Value) -> u64 {
    if e["range"].is_null() {
        0
    } else {
        from_byte(e)
    }
}

#[test]
fn lengths_that_disagree_are_refused_and_short_bodies_resume() {
    let root = fixtures();
    let srv = Server::start(root);
    let url = srv.at("set/x-00001-of-00003.gguf");
    let last = "/set/x-00003-of-00003.gguf";
    let last_size = size(&root.join("set").join(SET[2]));

    // A body longer than announced: refused, and none of it kept.
    let dir = cache("extra");
    srv.faults(json!({"lengthMismatch": [{"path": last, "extraBytes": 10}]}));
    let e = err(&info(&url, &dir, &[]));
    assert_eq!(e, format!("error [NETWORK_ERROR]: length mismatch: {} sent more than the {last_size} bytes it announced", srv.at(&last[1..])));
    let left = files(&dir);
    assert!(
        left.iter()
            .any(|f| f.ends_with("x-00003-of-00003.gguf.part")),
        "{left:?}"
    );
    assert_eq!(size(&cached(&dir, "x-00003-of-00003.gguf.part")), 0);
    // The finished shards stay; the next run fetches only the last one.
    srv.clear();
    ok(&info(&url, &dir, &[]));
    let gets = srv.gets("/");
    assert_eq!(gets.len(), 1, "{gets:?}");
    assert_eq!(gets[0]["path"], last);
    assert_same_bytes(&cached(&dir, SET[2]), &root.join("set").join(SET[2]));
    let _ = std::fs::remove_dir_all(&dir);

    // A body shorter than announced: the rest is fetched with a Range request.
    let dir = cache("missing");
    srv.clear();
    srv.faults(json!({"lengthMismatch": [{"path": last, "missingBytes": 1000}]}));
    ok(&info(&url, &dir, &[]));
    let gets = srv.gets(last);
    assert_eq!(gets.len(), 2);
    assert_eq!(gets[1]["range"], format!("bytes={}-", last_size - 1000));
    assert_same_bytes(&cached(&dir, SET[2]), &root.join("set").join(SET[2]));
    let _ = std::fs::remove_dir_all(&dir);

    // Files shorter or longer than their GGUF header says: BAD_GGUF, nothing cached.
    for (which, expect) in [
        (
            "short",
            "the file is shorter than its header says) at byte".to_string(),
        ),
        ("long", "4096 bytes follow the last tensor".to_string()),
    ] {
        let dir = cache(which);
        srv.clear();
        let u = srv.at(&format!("{which}/x-00001-of-00003.gguf"));
        let e = err(&info(&u, &dir, &[]));
        assert!(
            e.starts_with("error [BAD_GGUF]: ") && e.contains(&expect) && e.contains(&u),
            "{e}"
        );
        assert!(
            files(&dir).iter().all(|f| !f.contains(".gguf")),
            "{:?}",
            files(&dir)
        );
        assert_eq!(srv.gets("/").len(), 1, "stops at the bad shard");
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn a_mixed_up_shard_set_is_bad_split() {
    let srv = Server::start(fixtures());
    let dir = cache("mixed");
    let e = err(&info(&srv.at("mixed/x-00001-of-00003.gguf"), &dir, &[]));
    assert_eq!(
        e,
        format!("error [BAD_SPLIT]: split GGUF: {} should be shard 2 of 3, but its split keys say shard 2 of 2", srv.at("mixed/x-00002-of-00003.gguf"))
    );
    let e = err(&info(&srv.at("mixed1/x-00003-of-00003.gguf"), &dir, &[]));
    assert_eq!(
        e,
        format!("error [BAD_SPLIT]: split GGUF: {} should be shard 1 of 3, but its split keys say shard 1 of 2", srv.at("mixed1/x-00001-of-00003.gguf"))
    );
    // The good first shard of the mixed set stays cached; the foreign ones do not.
    let left = files(&dir);
    assert_eq!(
        left.iter().filter(|f| f.ends_with(".gguf")).count(),
        1,
        "{left:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_killed_download_resumes_from_its_part_file() {
    let root = fixtures();
    // A copy of the set of its own, so that changing a file here touches no other test.
    let own = root.join("own");
    let _ = std::fs::remove_dir_all(&own);
    std::fs::create_dir_all(own.join("set")).unwrap();
    for name in SET {
        std::fs::copy(root.join("set").join(name), own.join("set").join(name)).unwrap();
    }
    let srv = Server::start(&own);
    let dir = cache("killed");
    let url = srv.at("set/x-00001-of-00003.gguf");
    let first = "/set/x-00001-of-00003.gguf";
    let total = size(&own.join("set").join(SET[0]));

    srv.faults(json!({"bytesPerSecond": 20_000_000}));
    let mut child = Command::new(env!("CARGO_BIN_EXE_llama-webgpu"))
        .args([
            "info",
            "-m",
            &url,
            "--json",
            "--backend",
            "cpu",
            "--cache-dir",
            dir.to_str().unwrap(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    let part = loop {
        let p = files(&dir)
            .into_iter()
            .find(|f| f.ends_with("x-00001-of-00003.gguf.part"));
        if let Some(p) = p.map(|p| dir.join(p)).filter(|p| size(p) >= 8_000_000) {
            break p;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "no progress: {:?}",
            files(&dir)
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    child.kill().unwrap();
    child.wait().unwrap();
    let kept = size(&part);
    assert!(kept >= 8_000_000 && kept < total, "{kept} of {total}");

    srv.clear();
    ok(&info(&url, &dir, &[]));
    let gets = srv.gets(first);
    assert_eq!(gets.len(), 1);
    assert_eq!(gets[0]["range"], format!("bytes={kept}-"));
    assert_eq!(gets[0]["status"], 206);
    assert_eq!(
        gets[0]["bytes"].as_u64().unwrap(),
        total - kept,
        "only the missing bytes"
    );
    for name in SET {
        assert_same_bytes(&cached(&dir, name), &own.join("set").join(name));
    }

    // A part of a file that then changed on the server (new ETag) is started over, not spliced.
    let dir = cache("changed");
    let last = "/set/x-00003-of-00003.gguf";
    srv.clear();
    srv.faults(json!({"cut": [{"path": last, "afterBytes": 3_000_000, "times": -1}]}));
    let e = err(&info(&url, &dir, &["--retries", "0"]));
    assert!(
        e.contains("failed after 0 retries at byte 3000000 of"),
        "{e}"
    );
    assert_eq!(size(&cached(&dir, "x-00003-of-00003.gguf.part")), 3_000_000);
    let later = std::time::SystemTime::now() + Duration::from_secs(120);
    std::fs::File::options()
        .write(true)
        .open(own.join("set").join(SET[2]))
        .unwrap()
        .set_modified(later)
        .unwrap();
    srv.clear();
    ok(&info(&url, &dir, &[]));
    let gets = srv.gets(last);
    assert_eq!(gets.len(), 1);
    assert_eq!(
        (gets[0]["status"].as_u64(), gets[0]["range"].as_str()),
        (Some(200), None)
    );
    assert_same_bytes(&cached(&dir, SET[2]), &own.join("set").join(SET[2]));
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(fixtures().join("cache-killed"));
    let _ = std::fs::remove_dir_all(&own);
}
