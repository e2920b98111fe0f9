//! `/opt/resource/in`: hands the real process I/O to the library.

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let env = repave::process_env();
    let status = repave::run(
        repave::protocol::Step::In,
        &mut std::io::stdin().lock(),
        &mut std::io::stdout().lock(),
        Box::new(std::io::stderr()),
        &args,
        env,
    );
    std::process::exit(status);
}
