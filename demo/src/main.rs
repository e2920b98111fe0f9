//! The `repave-demo` binary (run by `ci/demo`): `repave-demo --bin-dir DIR` runs the demo ([`repave_demo::run`])
//! against `DIR/{check,in,out}`, tells the story on stdout, and exits 0 only when everything behaved as the demo's
//! scenario predicts; 1 on any surprise, or when the demo cannot run (the reason on stderr).

use std::path::PathBuf;
use std::process::ExitCode;

use repave_demo::{Binaries, Options};

const USAGE: &str = "usage: repave-demo --bin-dir DIR";

fn main() -> ExitCode {
    let mut argv = std::env::args().skip(1);
    let bin_dir = match (argv.next().as_deref(), argv.next(), argv.next()) {
        (Some("--help" | "-h"), None, None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        (Some("--bin-dir"), Some(dir), None) => PathBuf::from(dir),
        _ => {
            eprintln!("repave-demo: needs exactly --bin-dir DIR (the directory with check, in and out)\n{USAGE}");
            return ExitCode::FAILURE;
        }
    };
    let options = Options::new(Binaries::in_dir(&bin_dir));
    match repave_demo::run(&options, &mut std::io::stdout().lock()) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("repave-demo: {e:#}");
            ExitCode::FAILURE
        }
    }
}
