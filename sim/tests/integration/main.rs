//! The simulator's own tests in one crate: `binary` runs the `repave-sim` process (ready line, SIGTERM, bad
//! input), `sim` talks to it as a client (TLS, request log, faults, blobs, counters). One module:
//! `cargo test -p repave-sim --test integration sim::`.

mod common;

mod binary;
mod sim;
