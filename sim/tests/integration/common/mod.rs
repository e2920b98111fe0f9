//! Helpers shared by the simulator's integration tests.

use std::path::Path;
use std::time::Duration;

use reqwest::blocking::Client;

/// A client that trusts only the simulator's CA, with a timeout so no test can hang.
pub fn client(ca_cert_path: &Path) -> Client {
    let pem = std::fs::read(ca_cert_path).expect("reading the simulator CA");
    let ca = reqwest::Certificate::from_pem(&pem).expect("parsing the simulator CA");
    Client::builder()
        .add_root_certificate(ca)
        .timeout(Duration::from_secs(20))
        .build()
        .expect("building the test client")
}
