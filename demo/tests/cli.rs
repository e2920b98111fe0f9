//! The `repave-demo` binary's own errors: it needs exactly `--bin-dir DIR`, and a directory holding the three
//! resource binaries. (The story itself runs in tests/integration/demo.rs, against the debug binaries.)

use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_repave-demo");

fn failing(output: Output) -> String {
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert!(output.stdout.is_empty(), "{output:?}");
    String::from_utf8(output.stderr).unwrap()
}

#[test]
fn needs_a_bin_dir_with_the_three_binaries() {
    for args in [&[][..], &["--bin-dir"], &["demo", "--bin-dir", "x"], &["--bin-dir", "x", "y"]] {
        let stderr = failing(Command::new(BIN).args(args).output().unwrap());
        assert!(stderr.contains("needs exactly --bin-dir DIR"), "{args:?}: {stderr}");
    }

    let empty = tempfile::tempdir().unwrap();
    let stderr = failing(Command::new(BIN).arg("--bin-dir").arg(empty.path()).output().unwrap());
    assert!(stderr.contains("check does not exist; build the binaries first"), "{stderr}");
}
