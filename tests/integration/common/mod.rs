//! Shared helpers for the black-box tests: run a built binary exactly as Concourse would (JSON on
//! stdin, a directory argument, a controlled environment) and check the harness-wide rules on every
//! run — a sentinel secret never appears in stdout, stderr or any file the step wrote.

pub mod day2;
pub mod fleet;
pub mod opsman;

use serde_json::Value;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

/// Put this in every secret field of test requests; no output may ever contain it.
pub const SENTINEL: &str = "S3NTINEL-do-not-print-9f1c";

/// What one step printed.
#[derive(Debug)]
pub struct StepOutput {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

impl StepOutput {
    /// Asserts the step failed the protocol way: exit 1, nothing on stdout, a message containing all
    /// of `needles` on stderr.
    pub fn assert_fails_with(&self, needles: &[&str]) {
        assert_eq!(self.status, 1, "expected exit 1, got {}; stderr:\n{}", self.status, self.stderr);
        assert!(self.stdout.is_empty(), "stdout must be empty on error, got: {}", self.stdout);
        for needle in needles {
            assert!(self.stderr.contains(needle), "stderr lacks {needle:?}:\n{}", self.stderr);
        }
    }

    /// Asserts success and returns the parsed JSON answer.
    pub fn json(&self) -> Value {
        assert_eq!(self.status, 0, "step failed; stderr:\n{}", self.stderr);
        serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}): {}", self.stdout))
    }
}

/// Runs `step` (`check`, `in` or `out`) with `stdin` and optional directory argument, with only the
/// given environment variables set.
pub fn run_step(step: &str, stdin: &str, dir: Option<&Path>, env: &[(&str, &str)]) -> StepOutput {
    let mut command = Command::new(assert_cmd::cargo::cargo_bin(step));
    command.env_clear().envs(env.iter().copied()).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    if let Some(dir) = dir {
        command.arg(dir);
    }
    let mut child = command.spawn().expect("spawn step binary");
    child.stdin.take().expect("stdin").write_all(stdin.as_bytes()).ok();
    let out = child.wait_with_output().expect("wait for step");
    let output = StepOutput {
        status: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    assert_no_sentinel(&output, dir);
    output
}

/// Starts `step` as Concourse would, with `stdin` written and closed, and returns the running process,
/// for tests that kill it midway (its output is discarded).
pub fn spawn_step(step: &str, stdin: &str, dir: &Path) -> std::process::Child {
    let mut child = Command::new(assert_cmd::cargo::cargo_bin(step))
        .arg(dir)
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn step binary");
    child.stdin.take().expect("stdin").write_all(stdin.as_bytes()).expect("write the request");
    child
}

/// The harness-level secret scan: stdout, stderr and every file under `dir`, for the sentinel in
/// every encoded form ([`leak_forms`]).
pub fn assert_no_sentinel(output: &StepOutput, dir: Option<&Path>) {
    assert_no_leak(output, dir, SENTINEL);
}

/// [`assert_no_sentinel`] for any secret.
pub fn assert_no_leak(output: &StepOutput, dir: Option<&Path>, secret: &str) {
    for form in leak_forms(secret) {
        assert!(!output.stdout.contains(&form), "secret leaked on stdout as `{form}`:\n{}", output.stdout);
        assert!(!output.stderr.contains(&form), "secret leaked on stderr as `{form}`:\n{}", output.stderr);
        if let Some(dir) = dir {
            scan_files(dir, &form);
        }
    }
}

fn scan_files(dir: &Path, form: &str) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        // Only what the step could have written: real files and directories (reading a FIFO a test
        // planted would block; a symlink leads elsewhere).
        let Ok(kind) = std::fs::symlink_metadata(&path).map(|m| m.file_type()) else { continue };
        if kind.is_dir() {
            scan_files(&path, form);
        } else if !kind.is_file() {
            continue;
        } else if let Ok(bytes) = std::fs::read(&path) {
            let found = bytes.windows(form.len()).any(|w| w == form.as_bytes());
            assert!(!found, "secret leaked into file {} as `{form}`", path.display());
        }
    }
}

/// Every form `secret` could leak in, worked out here independently of `src/redact.rs` (a scan that
/// reused the code under test would prove nothing): as written; percent-encoded as a form does
/// (space as `+`) and strictly (space as `%20`), hex in either case; base64 and base64url wherever
/// it sits in a longer encoded string (the characters that stay the same whatever bytes surround
/// it); JSON-escaped as serde writes it and with `\\u` escapes for everything outside ASCII.
pub fn leak_forms(secret: &str) -> Vec<String> {
    use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
    const UNRESERVED: &percent_encoding::AsciiSet =
        &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');
    const FORM: &percent_encoding::AsciiSet = &NON_ALPHANUMERIC.remove(b'*').remove(b'-').remove(b'.').remove(b'_');
    let strict = utf8_percent_encode(secret, UNRESERVED).to_string();
    let form = utf8_percent_encode(secret, FORM).to_string().replace("%20", "+");
    let mut forms = vec![secret.to_string(), strict.to_lowercase(), form.to_lowercase(), strict, form];
    for engine in [base64::engine::general_purpose::STANDARD, base64::engine::general_purpose::URL_SAFE] {
        for offset in 0..3 {
            forms.extend(stable_base64(&engine, secret.as_bytes(), offset));
        }
    }
    let json = serde_json::to_string(secret).unwrap();
    let json = json.trim_matches('"').to_string();
    let ascii: String = json
        .encode_utf16()
        .map(|u| if u < 0x80 { char::from(u as u8).to_string() } else { format!("\\u{u:04x}") })
        .collect();
    forms.extend([json, ascii]);
    forms.retain(|f| f.len() >= 6);
    forms.sort();
    forms.dedup();
    forms
}

/// The base64 characters of `secret` placed `offset` bytes into a stream that do not change when
/// the bytes around it do: three encodings with different neighbours, positions where all agree.
fn stable_base64(engine: &impl base64::Engine, secret: &[u8], offset: usize) -> Option<String> {
    let encodings: Vec<Vec<u8>> = [0x00u8, 0xff, 0x5a]
        .iter()
        .map(|fill| {
            let mut bytes = vec![*fill; offset];
            bytes.extend_from_slice(secret);
            bytes.extend([*fill; 3]);
            engine.encode(&bytes).into_bytes()
        })
        .collect();
    let start = (offset * 4).div_ceil(3);
    let end = ((offset + secret.len()) * 4) / 3;
    let same = |i: usize| encodings.iter().all(|e| e[i] == encodings[0][i]);
    let core: Vec<u8> =
        (start..end).skip_while(|&i| !same(i)).take_while(|&i| same(i)).map(|i| encodings[0][i]).collect();
    String::from_utf8(core).ok().filter(|c| !c.is_empty())
}

/// A server process a test started (nginx, node); killed by its PID when dropped, so a failing
/// test does not leave it running.
pub struct Killed(pub std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A port that was free a moment ago on 127.0.0.1 (another process may still take it first).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A self-signed certificate for 127.0.0.1 and localhost, written to `dir` as `cert.pem` and
/// `key.pem`, for real servers that terminate TLS themselves. Returns the certificate PEM.
pub fn self_signed_cert(dir: &Path) -> String {
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    std::fs::write(dir.join("cert.pem"), cert.cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), cert.signing_key.serialize_pem()).unwrap();
    cert.cert.pem()
}

/// A plain-http listener on 127.0.0.1 that must never be reached: hostile servers redirect to it, and
/// a test asserts that nothing (no connection, so no credential) ever arrived.
pub struct Trap {
    port: u16,
    hits: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Trap {
    pub fn start() -> Trap {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let hits = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let record = hits.clone();
        // Detached: it blocks in accept until the test process ends. Each connection's first bytes are kept.
        std::thread::spawn(move || {
            for mut stream in listener.incoming().take(64).flatten() {
                use std::io::Read;
                let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(5)));
                let mut head = [0u8; 4096];
                let n = stream.read(&mut head).unwrap_or(0);
                record.lock().unwrap().push(String::from_utf8_lossy(&head[..n]).into_owned());
            }
        });
        Trap { port, hits }
    }

    /// `http://127.0.0.1:PORT{path}`
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// What reached it: one entry per connection, its first bytes.
    pub fn hits(&self) -> Vec<String> {
        self.hits.lock().unwrap().clone()
    }
}
