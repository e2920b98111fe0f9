//! `/opt/resource/check`: the Concourse check script. All behaviour lives in the library.

fn main() {
    repave::process_main(repave::protocol::Step::Check);
}
