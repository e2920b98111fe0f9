//! Every pipeline in `pipelines/` and `ci/` passes what `fly validate-pipeline --strict` checks, with
//! its `*.vars.example.yml` substituted like `fly -l`; every `repave` resource's `source` and every
//! get/put `params` parse with the strict types the binaries use, so the examples cannot drift from
//! the code. Task configs under `ci/tasks/` are checked too, and the scripts they run must exist.

use crate::pipeline_lint::{Options, lint_pipeline, task::lint_task_file};
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display())) {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "yml" || e == "yaml") {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

fn relative(path: &Path) -> String {
    path.strip_prefix(repo()).unwrap_or(path).display().to_string()
}

fn is_vars_file(path: &Path) -> bool {
    path.file_name().unwrap().to_string_lossy().ends_with(".vars.example.yml")
}

fn vars_file_for(pipeline: &Path) -> PathBuf {
    let stem = pipeline.file_stem().unwrap().to_string_lossy();
    pipeline.with_file_name(format!("{stem}.vars.example.yml"))
}

fn has_jobs(text: &str) -> bool {
    serde_yaml_ng::from_str::<serde_yaml_ng::Value>(text).is_ok_and(|v| v.get("jobs").is_some())
}

#[test]
fn every_pipeline_and_task_config_passes_the_linter() {
    let mut failures = Vec::new();
    let mut pipelines = 0;
    let mut validated = 0;
    for dir in ["pipelines", "ci"] {
        for path in yaml_files(&repo().join(dir)) {
            let name = relative(&path);
            let text = std::fs::read_to_string(&path).unwrap();
            if is_vars_file(&path) {
                let pipeline = path.to_string_lossy().replace(".vars.example.yml", ".yml");
                if !Path::new(&pipeline).exists() {
                    failures.push(format!("{name}: vars example without a pipeline `{pipeline}`"));
                }
                continue;
            }
            if path.parent().is_some_and(|p| p.ends_with("ci/tasks")) {
                failures.extend(lint_task_file(&name, &text).iter().map(ToString::to_string));
                continue;
            }
            // Everything else in pipelines/ must be a pipeline; in ci/ only files with jobs are.
            if dir == "ci" && !has_jobs(&text) {
                continue;
            }
            pipelines += 1;
            let vars_path = vars_file_for(&path);
            let vars = std::fs::read_to_string(&vars_path).ok();
            if vars.is_none() {
                failures.push(format!("{name}: no vars example `{}` beside it", relative(&vars_path)));
            }
            let report = lint_pipeline(&name, &text, &Options { vars: vars.as_deref() });
            failures.extend(report.findings.iter().map(ToString::to_string));
            if dir == "pipelines" && report.validated.is_empty() {
                failures.push(format!("{name}: declares no resource of type `repave`"));
            }
            validated += report.validated.len();
        }
    }
    eprintln!("{pipelines} pipelines linted, {validated} repave configs validated");
    assert!(failures.is_empty(), "{} findings:\n{}", failures.len(), failures.join("\n"));
    assert!(pipelines >= 5, "expected the four example pipelines and ci/pipeline.yml, found {pipelines}");
    assert!(validated > 0, "no repave config was validated at all");
}

/// The project pipeline runs task files and scripts from its own repository (the `repave` input):
/// they must exist, so a renamed script breaks this test rather than the next CI build.
#[test]
fn ci_pipeline_task_files_and_scripts_exist() {
    /// The `file` of every task step, wherever it is nested (plans, hooks, do, try, in_parallel).
    fn task_files(value: &serde_yaml_ng::Value, found: &mut Vec<String>) {
        match value {
            serde_yaml_ng::Value::Mapping(map) => {
                if map.contains_key("task")
                    && let Some(file) = map.get("file").and_then(|f| f.as_str())
                {
                    found.push(file.to_string());
                }
                map.values().for_each(|v| task_files(v, found));
            }
            serde_yaml_ng::Value::Sequence(items) => items.iter().for_each(|v| task_files(v, found)),
            _ => {}
        }
    }
    let pipeline: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(repo().join("ci/pipeline.yml")).unwrap()).unwrap();
    let mut files = Vec::new();
    task_files(&pipeline["jobs"], &mut files);
    assert!(!files.is_empty(), "ci/pipeline.yml runs no task files");
    for file in files {
        let path =
            file.strip_prefix("repave/").unwrap_or_else(|| panic!("task file `{file}` is not in the repave input"));
        let config: serde_yaml_ng::Value = serde_yaml_ng::from_str(
            &std::fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("{file}: {e}")),
        )
        .unwrap();
        let run = config["run"]["path"].as_str().unwrap_or_else(|| panic!("{file}: no run.path"));
        if let Some(script) = run.strip_prefix("repave/") {
            let meta = std::fs::metadata(repo().join(script)).unwrap_or_else(|e| panic!("{file}: {run}: {e}"));
            assert!(
                std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o111 != 0,
                "{run} is not executable"
            );
        }
    }
}

/// CI tests with the same Rust as the image build, so a toolchain bump cannot pass CI and then break
/// the Dockerfile's builder stage (or the other way round).
#[test]
fn ci_test_image_matches_the_dockerfile_builder() {
    let dockerfile = std::fs::read_to_string(repo().join("Dockerfile")).unwrap();
    let builder = dockerfile
        .lines()
        .find_map(|l| l.strip_prefix("FROM ").filter(|rest| rest.ends_with(" AS builder")))
        .map(|rest| rest.trim_end_matches(" AS builder").trim())
        .expect("the Dockerfile has a builder stage");
    let task: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(repo().join("ci/tasks/test.yml")).unwrap()).unwrap();
    let source = &task["image_resource"]["source"];
    let image = format!("{}:{}", source["repository"].as_str().unwrap(), source["tag"].as_str().unwrap());
    assert_eq!(image, builder, "ci/tasks/test.yml and the Dockerfile's builder stage use different Rust images");
}
