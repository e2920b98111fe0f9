//! `/opt/resource/out`: the Concourse put script (`out DIR`). All behaviour lives in the library.

fn main() {
    repave::process_main(repave::protocol::Step::Out);
}
