//! `kind: stemcell` against a real web server we did not write: nginx (Debian `nginx-light`, which
//! ci/test installs) serves a static bosh.io API answer and the tarballs over its own TLS, with
//! nginx's own HEAD, `Accept-Ranges` and 206 handling. repave-sim proves the fault paths; this proves
//! the happy paths are not tuned to our own simulator's quirks.

use crate::common::{Killed, StepOutput, free_port, run_step, self_signed_cert};
use serde_json::{Value, json};
use sha2::Digest;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const NAME: &str = "bosh-aws-xen-hvm-ubuntu-jammy-go_agent";
const SIZE: usize = 6 << 20;

/// nginx in the foreground with its own prefix.
struct Nginx {
    // Declared first, so it is killed before its work dir is removed.
    _process: Killed,
    port: u16,
    root: PathBuf,
    ca_pem: String,
    work: tempfile::TempDir,
}

/// Paths: `/api/` answers JSON, `/d/` serves tarballs with ranges, `/noranges/` the same files with
/// range support switched off (`max_ranges 0`), as some object-store proxies do.
fn config(work: &Path, port: u16) -> String {
    let w = work.display();
    format!(
        r#"
daemon off;
user root;
worker_processes 1;
pid {w}/nginx.pid;
error_log {w}/error.log warn;
events {{ worker_connections 64; }}
http {{
    log_format ranges '$request_method $uri $status "$http_range"';
    access_log {w}/access.log ranges;
    client_body_temp_path {w}/tmp;
    proxy_temp_path {w}/tmp;
    fastcgi_temp_path {w}/tmp;
    uwsgi_temp_path {w}/tmp;
    scgi_temp_path {w}/tmp;
    default_type application/octet-stream;
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {w}/cert.pem;
        ssl_certificate_key {w}/key.pem;
        root {w}/www;
        location /api/ {{ default_type application/json; }}
        location /noranges/ {{ alias {w}/www/d/; max_ranges 0; }}
    }}
}}
"#
    )
}

fn start() -> Nginx {
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("www");
    std::fs::create_dir_all(root.join("d")).unwrap();
    std::fs::create_dir_all(root.join("api/v1/stemcells")).unwrap();
    std::fs::create_dir_all(work.path().join("tmp")).unwrap();
    let ca_pem = self_signed_cert(work.path());
    // A free port can be taken by another test between our probe and nginx's bind: then nginx
    // exits, and we try another port (bounded).
    for _ in 0..5 {
        let port = free_port();
        let conf = work.path().join("nginx.conf");
        std::fs::write(&conf, config(work.path(), port)).unwrap();
        let child = Command::new("nginx")
            .args(["-c".as_ref(), conf.as_os_str(), "-p".as_ref(), work.path().as_os_str()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting nginx (install nginx-light: ci/test does)");
        let mut process = Killed(child);
        if wait_listening(&mut process.0, port) {
            return Nginx { _process: process, port, root, ca_pem, work };
        }
    }
    panic!("nginx did not start on any of 5 ports");
}

/// True once `port` accepts connections; false if the process exited first (bounded: 10 s).
fn wait_listening(child: &mut Child, port: u16) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(30));
    }
    panic!("nginx did not listen on {port} within 10s");
}

impl Nginx {
    fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.port)
    }

    /// Writes a tarball of random bytes under `/d/` and returns its published variant.
    fn publish_tarball(&self, file: &str, seed: u64) -> Value {
        let mut bytes = vec![0; SIZE];
        fastrand::Rng::with_seed(seed).fill(&mut bytes);
        std::fs::write(self.root.join("d").join(file), &bytes).unwrap();
        json!({
            "url": self.url(&format!("/d/{file}")),
            "size": bytes.len(),
            "md5": format!("{:x}", md5::Md5::digest(&bytes)),
            "sha1": format!("{:x}", sha1::Sha1::digest(&bytes)),
            "sha256": format!("{:x}", sha2::Sha256::digest(&bytes)),
        })
    }

    /// The bosh.io answer for NAME: newest first, as bosh.io sends it.
    fn publish_api(&self, records: &[Value]) {
        std::fs::write(self.root.join("api/v1/stemcells").join(NAME), Value::from(records.to_vec()).to_string())
            .unwrap();
    }

    /// The access log as `METHOD URI STATUS "RANGE"` lines.
    fn requests(&self) -> Vec<String> {
        let log = std::fs::File::open(self.work.path().join("access.log")).unwrap();
        BufReader::new(log).lines().map(Result::unwrap).collect()
    }

    fn step(&self, step: &str, request: Value, dir: Option<&Path>) -> StepOutput {
        let mut request = request;
        request["source"] = json!({"kind": "stemcell", "name": NAME, "api_url": self.url(""), "ca_cert": self.ca_pem, "flavor": "regular"});
        run_step(step, &request.to_string(), dir, &[])
    }
}

fn record(version: &str, regular: Value) -> Value {
    json!({"name": NAME, "version": version, "regular": regular})
}

fn tarball_gets<'a>(requests: &'a [String], prefix: &str) -> Vec<&'a String> {
    requests.iter().filter(|line| line.starts_with(&format!("GET {prefix}"))).collect()
}

#[test]
fn check_and_in_against_nginx_parallel_ranges_verified_byte_for_byte() {
    let nginx = start();
    let newest = nginx.publish_tarball("bosh-stemcell-1.10.tgz", 10);
    let older = nginx.publish_tarball("bosh-stemcell-1.9.tgz", 9);
    nginx.publish_api(&[record("1.10", newest.clone()), record("1.9", older)]);

    let check = nginx.step("check", json!({"version": {"version": "1.9"}}), None);
    assert_eq!(check.json(), json!([{"version": "1.9"}, {"version": "1.10"}]), "{}", check.stderr);

    let dir = tempfile::tempdir().unwrap();
    let got = nginx.step("in", json!({"version": {"version": "1.10"}, "params": {"parallel": 8}}), Some(dir.path()));
    assert_eq!(got.json()["version"], json!({"version": "1.10"}), "{}", got.stderr);
    let tarball = std::fs::read(dir.path().join("stemcell.tgz")).unwrap();
    assert_eq!(tarball, std::fs::read(nginx.root.join("d/bosh-stemcell-1.10.tgz")).unwrap());
    assert_eq!(std::fs::read_to_string(dir.path().join("sha256")).unwrap(), newest["sha256"].as_str().unwrap());
    assert!(got.stderr.contains("sha256 verified"), "{}", got.stderr);

    let requests = nginx.requests();
    let gets = tarball_gets(&requests, "/d/");
    assert!(gets.len() > 8, "the 6 MiB file comes in many ranged pieces: {requests:#?}");
    assert!(gets.iter().all(|line| line.contains(" 206 \"bytes=")), "every piece a 206: {requests:#?}");
}

#[test]
fn in_falls_back_to_one_stream_when_nginx_ignores_ranges() {
    let nginx = start();
    let mut variant = nginx.publish_tarball("bosh-stemcell-1.10.tgz", 3);
    variant["url"] = nginx.url("/noranges/bosh-stemcell-1.10.tgz").into();
    nginx.publish_api(&[record("1.10", variant)]);

    let dir = tempfile::tempdir().unwrap();
    let got = nginx.step("in", json!({"version": {"version": "1.10"}, "params": {}}), Some(dir.path()));
    assert_eq!(got.json()["version"], json!({"version": "1.10"}), "{}", got.stderr);
    assert_eq!(
        std::fs::read(dir.path().join("stemcell.tgz")).unwrap(),
        std::fs::read(nginx.root.join("d/bosh-stemcell-1.10.tgz")).unwrap()
    );
    let requests = nginx.requests();
    let full: Vec<_> = tarball_gets(&requests, "/noranges/").into_iter().filter(|l| l.contains(" 200 ")).collect();
    assert_eq!(full.len(), 1, "one full-body stream: {requests:#?}");
}

#[test]
fn a_checksum_mismatch_from_nginx_leaves_nothing_under_the_final_name() {
    let nginx = start();
    let mut variant = nginx.publish_tarball("bosh-stemcell-1.10.tgz", 5);
    variant["sha256"] = "0".repeat(64).into();
    nginx.publish_api(&[record("1.10", variant)]);

    let dir = tempfile::tempdir().unwrap();
    let got = nginx.step("in", json!({"version": {"version": "1.10"}, "params": {}}), Some(dir.path()));
    got.assert_fails_with(&["sha256"]);
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(
        left.iter().all(|name| name != "stemcell.tgz" && !name.to_string_lossy().starts_with(".repave")),
        "{left:?}"
    );
}
