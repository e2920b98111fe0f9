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

/// The harness-level secret scan: stdout, stderr and every file under `dir`.
pub fn assert_no_sentinel(output: &StepOutput, dir: Option<&Path>) {
    assert!(!output.stdout.contains(SENTINEL), "secret leaked on stdout:\n{}", output.stdout);
    assert!(!output.stderr.contains(SENTINEL), "secret leaked on stderr:\n{}", output.stderr);
    if let Some(dir) = dir {
        scan_files(dir);
    }
}

fn scan_files(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            scan_files(&path);
        } else if let Ok(bytes) = std::fs::read(&path) {
            let found = bytes.windows(SENTINEL.len()).any(|w| w == SENTINEL.as_bytes());
            assert!(!found, "secret leaked into file {}", path.display());
        }
    }
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
