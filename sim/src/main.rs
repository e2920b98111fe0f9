//! The `repave-sim` binary: starts the simulator, prints one JSON line (`url`, `ca_cert`, `control`) on stdout
//! when ready, logs to stderr, and shuts down cleanly on SIGTERM or Ctrl-C. (The demo that drives repave's
//! binaries against it is its own crate and binary, `repave-demo`.)

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use repave_sim::{Scenario, StartOptions};
use serde::Serialize;
use tokio::signal::unix::{SignalKind, signal};

const USAGE: &str = "usage: repave-sim [--scenario FILE] [--port N] [--ca-out PATH]";

/// The ready line, fields in this order: `{"url":…,"ca_cert":…,"control":…}`.
#[derive(Serialize)]
struct Ready<'a> {
    url: &'a str,
    ca_cert: String,
    control: &'a str,
}

#[derive(Debug, Default)]
struct Args {
    scenario: Option<PathBuf>,
    options: StartOptions,
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(Some(args)) => args,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("repave-sim: {e:#}\n{USAGE}");
            return ExitCode::FAILURE;
        }
    };
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("repave-sim: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `Ok(None)` means help was asked for.
fn parse_args(mut argv: impl Iterator<Item = String>) -> anyhow::Result<Option<Args>> {
    let mut args = Args::default();
    while let Some(arg) = argv.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
            _ => (arg.clone(), None),
        };
        if flag == "--help" || flag == "-h" {
            return Ok(None);
        }
        let mut value = || inline.clone().or_else(|| argv.next()).with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--scenario" => args.scenario = Some(PathBuf::from(value()?)),
            "--ca-out" => args.options.ca_out = Some(PathBuf::from(value()?)),
            "--port" => {
                let v = value()?;
                args.options.port = Some(v.parse().with_context(|| format!("--port: {v:?} is not a port number"))?);
            }
            "demo" => bail!("the demo is its own binary now: repave-demo --bin-dir DIR (ci/demo runs it)"),
            other => bail!("unknown argument {other:?}"),
        }
    }
    Ok(Some(args))
}

fn run(args: Args) -> anyhow::Result<()> {
    let scenario = match &args.scenario {
        Some(path) => Scenario::from_file(path)?,
        None => Scenario::default_scenario(),
    };
    let runtime = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
    runtime.block_on(serve(scenario, args.options))
}

async fn serve(scenario: Scenario, options: StartOptions) -> anyhow::Result<()> {
    // Signal handlers go in before the ready line, so a SIGTERM right after it is never missed.
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let sim = repave_sim::start(scenario, options).await?;
    let ready =
        Ready { url: &sim.url, ca_cert: sim.ca_cert_path.to_string_lossy().into_owned(), control: &sim.control_url };
    println!("{}", serde_json::to_string(&ready)?);
    eprintln!("repave-sim: listening on {}", sim.url);
    tokio::select! {
        _ = term.recv() => eprintln!("repave-sim: SIGTERM, shutting down"),
        _ = tokio::signal::ctrl_c() => eprintln!("repave-sim: interrupted, shutting down"),
    }
    sim.shutdown().await;
    Ok(())
}
