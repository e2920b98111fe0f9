//! The black-box tests in one crate (one build, one link, one binary), a module per area; ripgrep's layout.
//! Each module runs the built `check`/`in`/`out` binaries exactly as Concourse would against repave-sim (or a
//! real server we did not write), with the harness in [`common`].
//!
//! One module: `cargo test --test integration stemcell_in::`; one test: `cargo test --test integration
//! stemcell_in::md5_only_is_verified_with_md5`.

mod common;
mod pipeline_lint;

mod architecture;
mod bad_input;
mod confinement;
mod demo;
mod download_bounds;
mod download_order;
mod fleet_blackbox;
mod fleet_day2;
mod fleet_gitops;
mod fleet_oidc;
mod fleet_resume;
mod fleet_validation;
mod fuzz_parsing;
mod hostile_servers;
mod http_client;
mod kubernetes_steps;
mod opsman_flow;
mod opsman_stemcell;
mod opsman_steps;
mod pipelines;
mod protocol;
mod reliability_fleet;
mod reliability_in;
mod secrets;
mod stemcell_check;
mod stemcell_in;
mod stemcell_nginx;
mod stemcell_out;
mod tls_trust;
mod uaa_client;
