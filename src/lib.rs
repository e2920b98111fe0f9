//! repave: a Concourse resource type that tracks bosh.io stemcells, Kubernetes releases, TKGI fleets
//! and their Ops Manager, and rolls upgrades across them.
//!
//! The binaries are thin: each calls [`run`] with the real stdin, stdout, stderr, argv and environment.
//! Everything below takes its I/O as arguments so tests can run a step in-process or as a process.
//!
//! This file is the dispatcher and nothing else: it reads the request, picks the kind, builds the
//! step's context and hands the typed request down. Shared types live in their own modules below the
//! kinds (`env`, `context`), so no module imports the crate root; ARCHITECTURE.md draws the layers.

#![warn(unreachable_pub)]

// The public surface is what the binaries, tests/ and repave-sim use; everything else is crate-only.
pub mod clients;
pub mod config;
mod context;
pub mod env;
pub mod fleet;
pub mod http;
mod kubernetes;
mod opsman;
pub mod protocol;
pub mod redact;
mod rollout;
pub mod sigv4;
mod stemcell;
mod stepdir;
pub mod suggest;
pub mod versions;
pub mod window;

pub use env::Env;

use anyhow::{Context, Result};
use config::Kind;
use context::Ctx;
use protocol::{Request, Step};
use redact::Log;
use rollout::clock::{Clock, NOW_VARIABLE};
use std::io::{Read, Write};

/// The whole of a binary's `main`: run `step` with the real stdin, stdout, stderr, argv and
/// environment, and exit with its status.
pub fn process_main(step: Step) -> ! {
    let args: Vec<String> = std::env::args().collect();
    let status = run(
        step,
        &mut std::io::stdin().lock(),
        &mut std::io::stdout().lock(),
        Box::new(std::io::stderr()),
        &args,
        process_env(),
    );
    std::process::exit(status)
}

/// The image's one binary: the step is the name it was started as (`/opt/resource/in` is a symlink
/// to `/opt/resource/check`). One static binary instead of three keeps the image small.
pub fn multicall_main() -> ! {
    let program = std::env::args().next().unwrap_or_default();
    match Step::from_program(&program) {
        Some(step) => process_main(step),
        None => {
            eprintln!("error: started as `{program}`: run this binary as `check`, `in` or `out`");
            std::process::exit(1)
        }
    }
}

/// The real process environment, skipping variables that are not valid UTF-8 (std's `vars()` would
/// panic on them).
pub fn process_env() -> Env {
    std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))).collect()
}

/// Runs one step and returns the process exit status. On success exactly one JSON document is written
/// to `stdout`; on failure nothing is, and the error with its causes goes to `stderr`, redacted.
pub fn run(
    step: Step,
    stdin: &mut dyn Read,
    stdout: &mut dyn Write,
    stderr: Box<dyn Write + Send>,
    args: &[String],
    env: Env,
) -> i32 {
    let log = Log::new(stderr);
    match execute(step, stdin, args, env, &log) {
        Ok(answer) => match writeln!(stdout, "{answer}").and_then(|_| stdout.flush()) {
            Ok(()) => 0,
            Err(err) => {
                log.error(&anyhow::Error::new(err).context("writing the answer to stdout"));
                1
            }
        },
        Err(err) => {
            log.error(&err);
            1
        }
    }
}

fn execute(step: Step, stdin: &mut dyn Read, args: &[String], env: Env, log: &Log) -> Result<String> {
    let mut input = Vec::new();
    stdin.read_to_end(&mut input).context("reading the request from stdin")?;
    let json = protocol::parse_json(&input)?;
    // Register secrets before anything can quote the request back in an error.
    log.secrets().collect(&json);
    let request = protocol::parse_request(step, json)?;
    let kind = Kind::from_source(&request.source)?;
    let dir = match step {
        Step::Check => None,
        Step::In | Step::Out => Some(stepdir::StepDir::open(&protocol::step_dir(step, args)?)?),
    };
    let clock = Clock::from_setting(env.get(NOW_VARIABLE).map(String::as_str))?;
    let typed = parse(kind, step, &request)?;
    let ctx = Ctx { log: log.clone(), env, dir, clock };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let answer = runtime.block_on(dispatch(typed, ctx))?;
    Ok(redact_answer(&answer, log))
}

/// The answer with every registered secret replaced in its strings: a platform that echoes a
/// credential into a cluster name or a description must not get it onto stdout, where Concourse
/// keeps versions and metadata. Parsed, so a secret is replaced inside JSON strings, never across them.
fn redact_answer(answer: &str, log: &Log) -> String {
    match serde_json::from_str::<serde_json::Value>(answer) {
        Ok(mut value) => {
            log.secrets().redact_json(&mut value);
            value.to_string()
        }
        Err(_) => log.secrets().redact(answer),
    }
}

/// Parses a request's `source` and `params` for `step` with exactly the strict types the binaries use,
/// without running anything. Pipeline checks use it so example pipelines can never drift from the code.
pub fn validate_config(step: Step, request: &Request) -> Result<Kind> {
    let kind = Kind::from_source(&request.source)?;
    parse(kind, step, request)?;
    Ok(kind)
}

/// One request, typed by its kind (boxed: the fleet's is much the largest).
enum Parsed {
    Stemcell(Box<stemcell::Parsed>),
    Kubernetes(Box<kubernetes::Parsed>),
    Fleet(Box<fleet::Parsed>),
    Opsman(Box<opsman::Parsed>),
}

fn parse(kind: Kind, step: Step, request: &Request) -> Result<Parsed> {
    Ok(match kind {
        Kind::Stemcell => Parsed::Stemcell(Box::new(stemcell::validate(step, request)?)),
        Kind::Kubernetes => Parsed::Kubernetes(Box::new(kubernetes::validate(step, request)?)),
        Kind::Fleet => Parsed::Fleet(Box::new(fleet::validate(step, request)?)),
        Kind::Opsman => Parsed::Opsman(Box::new(opsman::validate(step, request)?)),
    })
}

async fn dispatch(parsed: Parsed, ctx: Ctx) -> Result<String> {
    match parsed {
        Parsed::Stemcell(request) => stemcell::run(*request, ctx).await,
        Parsed::Kubernetes(request) => kubernetes::run(*request, ctx).await,
        Parsed::Fleet(request) => fleet::run(*request, ctx).await,
        Parsed::Opsman(request) => opsman::run(*request, ctx).await,
    }
}
