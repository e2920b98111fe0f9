//! The simulator's own tests in one crate: `binary` runs the `repave-sim` process (ready line, SIGTERM, bad
//! input), `sim` talks to it as a client (TLS, request log, faults, blobs, counters), `opsman` checks the simulated
//! Ops Manager against om's fixtures and the platform's behaviour. One module:
//! `cargo test -p repave-sim --test integration sim::`.

mod common;

mod binary;
mod opsman;
mod sim;
