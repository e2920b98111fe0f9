//! Every file the binaries read from `params` or write stays inside the step directory (issue 15,
//! items 5-6). Each test runs in a sandbox: `step/` is the directory Concourse would pass, and
//! `outside/` beside it holds a private file and is where hostile names and planted symlinks point.
//! After each run, `outside/` must be exactly as it was, no error may quote the private file, and
//! every entry under `step/` must be a real file or directory inside it.

use crate::common::fleet::{names, world};
use crate::common::{SENTINEL, StepOutput, run_step};
use repave_sim::testing::RunningSim;
use serde_json::{Value, json};
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};

const PRIVATE: &str = "PRIVATE-CONTENT-never-print-7d1e";

struct Sandbox {
    top: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Sandbox {
        let top = tempfile::tempdir().unwrap();
        std::fs::create_dir(top.path().join("step")).unwrap();
        std::fs::create_dir(top.path().join("outside")).unwrap();
        std::fs::write(top.path().join("outside/private"), format!("{PRIVATE}\n")).unwrap();
        Sandbox { top }
    }

    fn step(&self) -> PathBuf {
        self.top.path().join("step")
    }

    fn outside(&self) -> PathBuf {
        self.top.path().join("outside")
    }

    /// Asserts nothing outside `step/` changed and no error quoted the private file.
    fn assert_contained(&self, out: &StepOutput) {
        let mut outside: Vec<String> = std::fs::read_dir(self.outside())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        outside.sort();
        assert_eq!(outside, ["private"], "something was written outside the step directory\n{}", out.stderr);
        assert_eq!(std::fs::read_to_string(self.outside().join("private")).unwrap(), format!("{PRIVATE}\n"));
        let mut top: Vec<String> = std::fs::read_dir(self.top.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        top.sort();
        assert_eq!(top, ["outside", "step"], "something was written beside the step directory");
        assert!(!out.stderr.contains(PRIVATE) && !out.stdout.contains(PRIVATE), "a file was quoted:\n{}", out.stderr);
    }

    /// Every output under `step/`: a regular file or a directory, no symlink left that leads out.
    fn outputs(&self) -> Vec<(String, u32)> {
        let mut found = Vec::new();
        let mut pending = vec![self.step()];
        while let Some(dir) = pending.pop() {
            for entry in std::fs::read_dir(&dir).unwrap().flatten() {
                let meta = std::fs::symlink_metadata(entry.path()).unwrap();
                let relative = entry.path().strip_prefix(self.step()).unwrap().display().to_string();
                if relative == "inputs" {
                    continue; // what the test planted as the job's inputs, not an output
                }
                if meta.is_dir() {
                    pending.push(entry.path());
                } else if meta.file_type().is_symlink() {
                    let target = entry.path().canonicalize().unwrap_or_default();
                    assert!(target.starts_with(self.step().canonicalize().unwrap()), "{relative} leads out");
                } else {
                    found.push((relative, meta.permissions().mode() & 0o777));
                }
            }
        }
        found.sort();
        found
    }

    /// Plants a symlink at each of `names` (in `step/`) pointing at a file in `outside/`.
    fn plant(&self, names: &[&str]) {
        for name in names {
            symlink(self.outside().join(format!("planted-{}", name.replace('/', "-"))), self.step().join(name))
                .unwrap();
        }
    }
}

fn fleet_source(sim: &RunningSim) -> Value {
    crate::common::fleet::source(sim, json!({}))
}

fn fleet_world(clusters: &[&str]) -> RunningSim {
    let scenario = world(clusters, 100, "");
    RunningSim::start(&scenario.replace("scopes: [pks.clusters.admin]", "scopes: [pks.clusters.admin, bosh.admin]"))
}

#[test]
fn kubeconfigs_are_never_written_under_hostile_cluster_names() {
    for hostile in ["../escape", "/tmp/repave-absolute-escape", "..", ".hidden", "a/b"] {
        let sim = fleet_world(&["{name: ok-1}", &format!("{{name: {hostile:?}}}")]);
        let sandbox = Sandbox::new();
        let request = json!({"source": fleet_source(&sim), "params": {"kubeconfig": true}, "version": {"digest": "x"}});
        let out = run_step("in", &request.to_string(), Some(&sandbox.step()), &[]);
        out.assert_fails_with(&["not a plain file name", "none was written"]);
        sandbox.assert_contained(&out);
        assert!(!sandbox.step().join("kubeconfigs").exists(), "{hostile}: kubeconfigs were half written");
        assert!(!Path::new("/tmp/repave-absolute-escape.json").exists());
    }
}

#[test]
fn a_planted_kubeconfigs_symlink_is_not_written_through() {
    let sim = fleet_world(&["{name: ok-1}"]);
    let sandbox = Sandbox::new();
    symlink(sandbox.outside(), sandbox.step().join("kubeconfigs")).unwrap();
    let request = json!({"source": fleet_source(&sim), "params": {"kubeconfig": true}, "version": {"digest": "x"}});
    let out = run_step("in", &request.to_string(), Some(&sandbox.step()), &[]);
    out.assert_fails_with(&["refusing to write `kubeconfigs/ok-1.json`", "not a directory"]);
    sandbox.assert_contained(&out);
}

/// A put's directory with `stemcell/version` and `fleet-repo/fleet.yml`, as inputs would be.
fn put_dir(sandbox: &Sandbox) {
    std::fs::create_dir(sandbox.step().join("inputs")).unwrap();
    std::fs::write(sandbox.step().join("inputs/version"), "1.19.2-build.10\n").unwrap();
    std::fs::write(sandbox.step().join("inputs/fleet.yml"), "clusters: []\n").unwrap();
    symlink(sandbox.outside().join("private"), sandbox.step().join("inputs/escape")).unwrap();
    symlink("/dev/zero", sandbox.step().join("inputs/zero")).unwrap();
    let fifo = sandbox.step().join("inputs/fifo");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    std::fs::write(sandbox.step().join("inputs/huge"), "1".repeat(5 << 20)).unwrap();
}

#[test]
fn fleet_params_paths_stay_inside_the_put_directory() {
    let sim = fleet_world(&["{name: c-1, pks_version: 1.19.2-build.10}"]);
    let outside_private = Sandbox::new().outside().join("private");
    for field in ["target_version_file", "desired", "target_stemcell_file"] {
        for (path, why) in [
            ("../outside/private", "leads outside the step's directory"),
            (outside_private.to_str().unwrap(), "is an absolute path"),
            ("inputs/escape", "leads outside the step's directory"),
            ("inputs/zero", "leads outside the step's directory"),
            ("inputs/fifo", "is not a regular file"),
            ("inputs/huge", "is larger than"),
            ("inputs/missing", "no such file"),
        ] {
            let sandbox = Sandbox::new();
            put_dir(&sandbox);
            let mut source = fleet_source(&sim);
            if field == "target_stemcell_file" {
                source["director"] = json!({"url": sim.url(), "client": "repave", "client_secret": SENTINEL});
            }
            let request = json!({"source": source, "params": {field: path, "dry_run": true}});
            let out = run_step("out", &request.to_string(), Some(&sandbox.step()), &[]);
            out.assert_fails_with(&[&format!("params.{field}"), why]);
            sandbox.assert_contained(&out);
        }
    }
}

#[test]
fn the_backup_input_stays_inside_the_put_directory() {
    let sim = fleet_world(&["{name: c-1}"]);
    let cases =
        [("../outside", "leads outside"), ("inputs/escape", "leads outside"), ("inputs/version", "not a directory")];
    for (dir, why) in cases {
        let sandbox = Sandbox::new();
        put_dir(&sandbox);
        let params = json!({"require_backup": {"dir": dir}, "dry_run": true});
        let out = run_step(
            "out",
            &json!({"source": fleet_source(&sim), "params": params}).to_string(),
            Some(&sandbox.step()),
            &[],
        );
        out.assert_fails_with(&["params.require_backup.dir", why]);
        sandbox.assert_contained(&out);
    }
}

#[test]
fn a_version_file_is_never_printed_whole() {
    let sim = fleet_world(&["{name: c-1}"]);
    let sandbox = Sandbox::new();
    put_dir(&sandbox);
    std::fs::write(sandbox.step().join("inputs/notes"), format!("line one\n{PRIVATE}\n")).unwrap();
    for field in ["target_version_file", "target_stemcell_file"] {
        let mut source = fleet_source(&sim);
        source["director"] = json!({"url": sim.url(), "client": "repave", "client_secret": SENTINEL});
        let request = json!({"source": source, "params": {field: "inputs/notes", "dry_run": true}});
        let out = run_step("out", &request.to_string(), Some(&sandbox.step()), &[]);
        out.assert_fails_with(&[&format!("params.{field}"), "2 line(s)"]);
        sandbox.assert_contained(&out);
    }
}

#[test]
fn plan_files_replace_planted_symlinks_instead_of_writing_through_them() {
    let sim = fleet_world(&["{name: c-1}"]);
    let sandbox = Sandbox::new();
    put_dir(&sandbox);
    sandbox.plant(&["plan.json", "plan.md"]);
    let params = json!({"desired": "inputs/fleet.yml", "dry_run": true});
    let request = json!({"source": fleet_source(&sim), "params": params});
    let out = run_step("out", &request.to_string(), Some(&sandbox.step()), &[]);
    out.json();
    sandbox.assert_contained(&out);
    let outputs = sandbox.outputs();
    assert!(
        outputs.contains(&("plan.json".into(), 0o644)) && outputs.contains(&("plan.md".into(), 0o644)),
        "{outputs:?}"
    );
}

const NAME: &str = "bosh-vsphere-esxi-ubuntu-jammy-go_agent";

fn stemcell_sim() -> RunningSim {
    RunningSim::start(&format!(
        "uaa:\n  clients: [{{id: repave, secret: {SENTINEL}, scopes: [bosh.admin]}}]\nboshio:\n  stemcells:\n    - name: {NAME}\n      versions:\n        - {{version: \"1.506\", regular: {{size: 20000}}}}\n"
    ))
}

fn stemcell_source(sim: &RunningSim) -> Value {
    json!({"kind": "stemcell", "name": NAME, "api_url": sim.url(), "flavor": "regular",
           "ca_cert": std::fs::read_to_string(sim.ca_cert_path()).unwrap(),
           "director": {"url": sim.url(), "client": "repave", "client_secret": SENTINEL}})
}

#[test]
fn the_stemcell_put_reads_only_inside_its_directory() {
    let sim = stemcell_sim();
    for (setup, params, why) in [
        ("none", json!({"from": "../outside"}), "leads outside the step's directory"),
        ("none", json!({"from": "/etc"}), "is an absolute path"),
        ("version-link", json!({"from": "stemcell"}), "leads outside the step's directory"),
        ("version-junk", json!({"from": "stemcell"}), "not a stemcell version"),
        (
            "tarball-link",
            json!({"from": "stemcell", "upload_tarball": true}),
            "stemcell.tgz is a symlink that leads out",
        ),
    ] {
        let sandbox = Sandbox::new();
        let fetched = sandbox.step().join("stemcell");
        std::fs::create_dir(&fetched).unwrap();
        std::fs::write(fetched.join("url"), "https://bosh.io/x.tgz").unwrap();
        match setup {
            "version-link" => symlink(sandbox.outside().join("private"), fetched.join("version")).unwrap(),
            "version-junk" => std::fs::write(fetched.join("version"), format!("{PRIVATE}\n{PRIVATE}")).unwrap(),
            "tarball-link" => {
                std::fs::write(fetched.join("version"), "1.506").unwrap();
                symlink(sandbox.outside().join("private"), fetched.join("stemcell.tgz")).unwrap();
            }
            _ => std::fs::write(fetched.join("version"), "1.506").unwrap(),
        }
        let request = json!({"source": stemcell_source(&sim), "params": params});
        let out = run_step("out", &request.to_string(), Some(&sandbox.step()), &[]);
        out.assert_fails_with(&["params.from", why]);
        sandbox.assert_contained(&out);
    }
    assert_eq!(sim.state().director.task_count(), 0, "nothing was uploaded");
}

/// Every `in` and a dry-run `out` of every kind, with a symlink planted at each name it writes:
/// each output lands inside the step directory as a real file with its documented mode, and
/// nothing outside changes.
#[test]
fn every_output_of_every_kind_stays_inside() {
    let sim = stemcell_sim();
    let sandbox = Sandbox::new();
    sandbox.plant(&["version", "url", "sha1", "sha256", "stemcell.tgz"]);
    let request = json!({"source": stemcell_source(&sim), "version": {"version": "1.506"}});
    let out = run_step("in", &request.to_string(), Some(&sandbox.step()), &[]);
    out.json();
    sandbox.assert_contained(&out);
    let modes: Vec<u32> = sandbox.outputs().into_iter().map(|(_, mode)| mode).collect();
    assert_eq!(modes, [0o644; 5], "{:?}", sandbox.outputs());

    let sim = RunningSim::start("");
    let sandbox = Sandbox::new();
    sandbox.plant(&["version", "tag", "path.json"]);
    let source = json!({"kind": "kubernetes", "feed_url": format!("{}/release", sim.url()),
                        "ca_cert": std::fs::read_to_string(sim.ca_cert_path()).unwrap()});
    let request = json!({"source": source, "version": {"version": "1.31.4"}, "params": {"from_version": "1.30.1"}});
    let out = run_step("in", &request.to_string(), Some(&sandbox.step()), &[]);
    out.json();
    sandbox.assert_contained(&out);
    assert_eq!(sandbox.outputs().len(), 3, "{:?}", sandbox.outputs());

    let sim = fleet_world(&names("c", 2).iter().map(String::as_str).collect::<Vec<_>>());
    let sandbox = Sandbox::new();
    sandbox.plant(&["clusters.json", "fleet.md"]);
    let request = json!({"source": fleet_source(&sim), "params": {"kubeconfig": true}, "version": {"digest": "x"}});
    let out = run_step("in", &request.to_string(), Some(&sandbox.step()), &[]);
    out.json();
    sandbox.assert_contained(&out);
    let outputs = sandbox.outputs();
    assert_eq!(
        outputs,
        [
            ("clusters.json".to_string(), 0o644),
            ("fleet.md".to_string(), 0o644),
            ("kubeconfigs/c-01.json".to_string(), 0o600),
            ("kubeconfigs/c-02.json".to_string(), 0o600),
        ]
    );
}
