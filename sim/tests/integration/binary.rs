//! The `repave-sim` binary as a process: its ready line, serving, and a clean exit on SIGTERM; bad input exits 1.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_repave-sim");

/// Reads the first stdout line of `child` within `limit`.
fn ready_line(child: &mut Child, limit: Duration) -> String {
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    rx.recv_timeout(limit).expect("no ready line in time")
}

fn wait_bounded(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("repave-sim did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn prints_ready_line_serves_and_exits_0_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let ca_out = dir.path().join("ca.pem");
    let mut child =
        Command::new(BIN).arg("--ca-out").arg(&ca_out).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    let line = ready_line(&mut child, Duration::from_secs(30));
    assert!(line.starts_with(r#"{"url":"https://127.0.0.1:"#), "{line}");
    let ready: serde_json::Value = serde_json::from_str(&line).unwrap();
    let url = ready["url"].as_str().unwrap();
    assert!(url.starts_with("https://127.0.0.1:"), "{line}");
    assert_eq!(ready["ca_cert"].as_str().unwrap(), ca_out.to_str().unwrap());
    assert_eq!(ready["control"].as_str().unwrap(), format!("{url}/_sim"));

    let client = crate::common::client(&ca_out);
    assert!(client.get(format!("{url}/_sim/json")).send().unwrap().status().is_success());

    let pid = i32::try_from(child.id()).unwrap();
    // SAFETY: kill(2) with a pid we spawned and still own (not yet reaped) has no memory effects.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let status = wait_bounded(&mut child, Duration::from_secs(15));
    assert!(status.success(), "{status:?}");
}

fn run_failing(args: &[&str]) -> String {
    let output = Command::new(BIN).args(args).stdin(Stdio::null()).output().unwrap();
    assert_eq!(output.status.code(), Some(1), "{args:?}");
    assert!(output.stdout.is_empty());
    String::from_utf8(output.stderr).unwrap()
}

#[test]
fn bad_arguments_exit_1_naming_the_problem() {
    assert!(run_failing(&["--bogus"]).contains("--bogus"));
    assert!(run_failing(&["--port", "seventy"]).contains("seventy"));
    assert!(run_failing(&["--scenario"]).contains("--scenario needs a value"));
    assert!(run_failing(&["demo", "--bin-dir", "x"]).contains("repave-demo --bin-dir DIR"));
}

#[test]
fn invalid_scenario_exits_1_naming_the_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.yaml");
    std::fs::write(&file, "time_scale: 0.1\ntksi: {}\n").unwrap();
    let stderr = run_failing(&["--scenario", file.to_str().unwrap()]);
    assert!(stderr.contains("bad.yaml") && stderr.contains("tksi"), "{stderr}");

    let missing = dir.path().join("missing.json");
    assert!(run_failing(&["--scenario", missing.to_str().unwrap()]).contains("missing.json"));
}
