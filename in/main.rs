//! `/opt/resource/in`: the Concourse get script (`in DIR`). All behaviour lives in the library.

fn main() {
    repave::process_main(repave::protocol::Step::In);
}
