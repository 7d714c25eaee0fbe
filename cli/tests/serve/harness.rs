//! Starting `dlp-run serve` on a free port with SmolLM2 and the shared task adapters, and
//! talking to it over HTTP.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The eight task adapters of `../shared/adapters/smollm2-tasks`.
pub const TASKS: [&str; 8] = [
    "boolq",
    "piqa",
    "winogrande",
    "social_iqa",
    "arc_easy",
    "openbookqa",
    "arc_challenge",
    "gsm8k",
];

/// The binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_dlp-run")
}

/// Paths of the SmolLM2 GGUF, the task adapters and the task data; None (skipped) without them.
pub struct Assets {
    pub gguf: PathBuf,
    pub adapters: PathBuf,
    pub data: PathBuf,
    pub tokenizer: PathBuf,
}

pub fn assets() -> Option<Assets> {
    let smol = dlp_tests::fixtures("smollm2")?;
    let adapters = dlp_tests::shared("adapters/smollm2-tasks")?;
    let data = dlp_tests::shared("data/tasks")?;
    Some(Assets {
        gguf: smol.join("SmolLM2-135M-Instruct.Q4_1.gguf"),
        tokenizer: smol.join("tokenizer/tokenizer.json"),
        adapters,
        data,
    })
}

impl Assets {
    /// `--model ... --backend cpu --adapter t=...` for every task adapter.
    pub fn model_args(&self) -> Vec<String> {
        let mut a = vec![
            "--model".into(),
            self.gguf.display().to_string(),
            "--backend".into(),
            "cpu".into(),
        ];
        for t in TASKS {
            a.push("--adapter".into());
            a.push(format!("{t}={}", self.adapters.join(t).display()));
        }
        a
    }

    /// A small router over the eight tasks, trained once per test process (seconds: a narrow
    /// network, two epochs on the dev splits); its quality does not matter here, only that
    /// the server and `generate` route alike.
    pub fn router(&self) -> &'static Path {
        static DIR: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
        &DIR.get_or_init(|| {
            let tmp = tempfile::tempdir().unwrap();
            let out = tmp.path().join("router");
            let mut args: Vec<String> = vec!["train-router".into(), "--data".into()];
            for t in TASKS {
                args.push(self.data.join(t).join("dev.jsonl").display().to_string());
            }
            args.extend(
                [
                    "--tokenizer",
                    self.tokenizer.to_str().unwrap(),
                    "--out",
                    out.to_str().unwrap(),
                    "--epochs",
                    "2",
                    "--embed-dim",
                    "32",
                    "--hidden",
                    "64,64",
                    "--quiet",
                ]
                .map(String::from),
            );
            let o = Command::new(bin()).args(&args).output().unwrap();
            assert!(
                o.status.success(),
                "train-router: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            (tmp, out)
        })
        .1
    }
}

/// A running server; killed when dropped.
pub struct Server {
    child: Option<Child>,
    pub port: u16,
    log: Arc<Mutex<String>>,
    agent: ureq::Agent,
}

/// An HTTP answer: status, headers we look at, body.
pub struct Answer {
    pub status: u16,
    pub retry_after: Option<String>,
    pub request_id: Option<String>,
    pub content_type: String,
    pub body: String,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }
}

impl Server {
    /// Starts `dlp-run serve --port 0 ARGS` and waits until it listens.
    pub fn start(args: &[String]) -> Server {
        let mut child = Command::new(bin())
            .arg("serve")
            .args(["--port", "0"])
            .args(args)
            .env("RUST_BACKTRACE", "0")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let mut lines = BufReader::new(child.stderr.take().unwrap());
        let mut port = None;
        let t0 = Instant::now();
        while port.is_none() {
            let mut line = String::new();
            if lines.read_line(&mut line).unwrap() == 0 {
                let st = child.wait().unwrap();
                panic!(
                    "server exited ({st}) before listening:\n{}",
                    log.lock().unwrap()
                );
            }
            log.lock().unwrap().push_str(&line);
            if let Some(rest) = line.split("listening on http://").nth(1) {
                port = rest.trim().rsplit(':').next().and_then(|p| p.parse().ok());
            }
            assert!(
                t0.elapsed() < Duration::from_secs(120),
                "server did not start"
            );
        }
        // Keep draining stderr so the server never blocks on a full pipe.
        let log2 = log.clone();
        std::thread::spawn(move || {
            let mut rest = String::new();
            let mut r = lines;
            let mut buf = [0u8; 4096];
            while let Ok(n) = r.read(&mut buf) {
                if n == 0 {
                    break;
                }
                rest.push_str(&String::from_utf8_lossy(&buf[..n]));
                log2.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(600)))
            .build()
            .new_agent();
        let s = Server {
            child: Some(child),
            port: port.unwrap(),
            log,
            agent,
        };
        s.wait_ready();
        s
    }

    fn wait_ready(&self) {
        let t0 = Instant::now();
        while self.get("/health").status != 200 {
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "server never became ready"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// What the server printed so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Whether the log holds `needle` within 10 s: lines printed after "listening" (the
    /// startup banner) are read by another thread, and may not be in yet when the server
    /// first answers.
    pub fn log_has(&self, needle: &str) -> bool {
        let t0 = Instant::now();
        while !self.log().contains(needle) {
            if t0.elapsed() > Duration::from_secs(10) {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        true
    }

    fn answer(r: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Answer {
        let mut r = r.unwrap_or_else(|e| panic!("HTTP request failed: {e}"));
        let h = |n: &str| {
            r.headers()
                .get(n)
                .and_then(|v| v.to_str().ok())
                .map(String::from)
        };
        let (retry_after, content_type) = (h("retry-after"), h("content-type").unwrap_or_default());
        let request_id = h("x-request-id");
        let body = r.body_mut().read_to_string().unwrap_or_default();
        Answer {
            status: r.status().as_u16(),
            retry_after,
            request_id,
            content_type,
            body,
        }
    }

    pub fn get(&self, path: &str) -> Answer {
        Self::answer(self.agent.get(self.url(path)).call())
    }

    pub fn get_auth(&self, path: &str, key: &str) -> Answer {
        Self::answer(
            self.agent
                .get(self.url(path))
                .header("Authorization", format!("Bearer {key}"))
                .call(),
        )
    }

    /// POSTs raw bytes with extra headers.
    pub fn post_raw(&self, path: &str, body: &[u8], headers: &[(&str, &str)]) -> Answer {
        let mut r = self
            .agent
            .post(self.url(path))
            .header("Content-Type", "application/json");
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        Self::answer(r.send(body))
    }

    /// POSTs a body the server may refuse before reading it all (past the size limit):
    /// written from another thread, write errors ignored, the answer read as it comes.
    pub fn post_oversized(&self, path: &str, body: Vec<u8>) -> Answer {
        use std::io::Write;
        let mut c = std::net::TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        c.write_all(head.as_bytes()).unwrap();
        let mut w = c.try_clone().unwrap();
        let writer = std::thread::spawn(move || {
            let _ = w.write_all(&body);
        });
        let mut raw = Vec::new();
        let _ = c.read_to_end(&mut raw);
        let _ = writer.join();
        let (status, headers, body) = raw_response(&String::from_utf8_lossy(&raw));
        let header = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
        Answer {
            status,
            retry_after: header("retry-after"),
            request_id: header("x-request-id"),
            content_type: header("content-type").unwrap_or_default(),
            body,
        }
    }

    pub fn post(&self, path: &str, body: &Value) -> Answer {
        self.post_raw(path, body.to_string().as_bytes(), &[])
    }

    /// A request that must succeed; its JSON.
    pub fn ok(&self, path: &str, body: &Value) -> Value {
        let a = self.post(path, body);
        assert_eq!(a.status, 200, "{path} {body}: {}", a.body);
        a.json()
    }

    /// A streamed request: every `data:` event, parsed (`[DONE]` as a string).
    pub fn stream(&self, path: &str, body: &Value) -> Vec<Value> {
        let a = self.post(path, body);
        assert_eq!(a.status, 200, "{path} {body}: {}", a.body);
        assert!(
            a.content_type.starts_with("text/event-stream"),
            "{}",
            a.content_type
        );
        sse_events(&a.body)
    }

    /// A metric's value (the first sample whose name and labels start with `prefix`).
    pub fn metric(&self, prefix: &str) -> f64 {
        let m = self.get("/metrics").body;
        Self::metric_in(&m, prefix).unwrap_or_else(|| panic!("no metric {prefix} in\n{m}"))
    }

    /// A series that may not exist yet (a status never answered): 0 until it does.
    pub fn count(&self, prefix: &str) -> f64 {
        Self::metric_in(&self.get("/metrics").body, prefix).unwrap_or(0.0)
    }

    fn metric_in(m: &str, prefix: &str) -> Option<f64> {
        m.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }

    /// The server's resident memory in MiB (`VmRSS` of /proc; None where there is none).
    pub fn rss_mib(&self) -> Option<f64> {
        let pid = self.child.as_ref()?.id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
        let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb / 1024.0)
    }

    /// Sends SIGTERM and waits for the exit.
    pub fn terminate(self) -> ExitStatus {
        self.terminate_after(1)
    }

    /// Sends SIGTERM `signals` times, half a second apart, and waits for the exit.
    pub fn terminate_after(mut self, signals: usize) -> ExitStatus {
        let mut child = self.child.take().unwrap();
        for i in 0..signals {
            if i > 0 {
                std::thread::sleep(Duration::from_millis(500));
            }
            // SAFETY: kill(2) on our own child's pid.
            unsafe {
                libc::kill(child.id() as i32, libc::SIGTERM);
            }
        }
        let t0 = Instant::now();
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                return st;
            }
            if t0.elapsed() > Duration::from_secs(60) {
                let _ = child.kill();
                panic!(
                    "server did not exit within 60 s of SIGTERM:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A raw HTTP response's status, headers (names lowercased) and body.
pub fn raw_response(raw: &str) -> (u16, Vec<(String, String)>, String) {
    let (top, body) = raw.split_once("\r\n\r\n").unwrap_or((raw, ""));
    let mut lines = top.lines();
    let status = (lines.next())
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {raw:?}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (status, headers, body.to_string())
}

/// The `data:` payloads of a server-sent-events body.
pub fn sse_events(body: &str) -> Vec<Value> {
    body.split("\n\n")
        .filter_map(|ev| ev.lines().find_map(|l| l.strip_prefix("data: ")))
        .map(|d| serde_json::from_str(d).unwrap_or(Value::String(d.to_string())))
        .collect()
}

/// The text of a streamed response (completions' `text` or chat's `delta.content`), choice 0.
pub fn streamed_text(events: &[Value], choice: usize) -> String {
    let mut s = String::new();
    for e in events {
        for c in e["choices"].as_array().into_iter().flatten() {
            if c["index"] == choice {
                s.push_str(
                    c["text"]
                        .as_str()
                        .or(c["delta"]["content"].as_str())
                        .unwrap_or(""),
                );
            }
        }
    }
    s
}

/// `body` with the fields of the object `extra` set in it (a request plus a test's fields).
pub fn merged(mut body: Value, extra: Value) -> Value {
    for (k, v) in extra.as_object().expect("extra fields are an object") {
        body[k] = v.clone();
    }
    body
}

/// A question from a task's dev split.
pub fn question(data: &Path, task: &str, i: usize) -> String {
    let text = std::fs::read_to_string(data.join(task).join("dev.jsonl")).unwrap();
    let line = text.lines().nth(i).unwrap();
    let v: Value = serde_json::from_str(line).unwrap();
    v["instruction"].as_str().unwrap().to_string()
}
