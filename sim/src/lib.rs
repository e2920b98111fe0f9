//! repave-sim: one HTTPS server on 127.0.0.1 that simulates the platforms repave talks to (bosh.io, UAA, TKGI,
//! the BOSH director, Kubernetes feeds), seeded from a [`Scenario`], with fault injection and a control API
//! under `/_sim` that shows tests what happened.
//!
//! Async tests call [`start`]; sync `#[test]`s use [`testing::RunningSim`], which runs the server on its own
//! thread and runtime.

mod control;
pub mod scenario;
pub mod services;
pub mod shared;
pub mod state;
pub mod testing;
pub mod tls;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::middleware::from_fn_with_state;
use axum_server::Handle;
use axum_server::tls_rustls::RustlsConfig;
use tokio::task::JoinHandle;

pub use scenario::Scenario;
pub use shared::faults::{FaultAction, FaultRule};
pub use state::{RequestRecord, SimState};

/// How long a graceful shutdown waits for open connections before closing them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Where to listen and where to write the CA.
#[derive(Debug, Clone, Default)]
pub struct StartOptions {
    /// Port on 127.0.0.1; a free one when `None`.
    pub port: Option<u16>,
    /// Where to write the CA certificate (PEM); a file in a temporary directory owned by the handle when `None`.
    pub ca_out: Option<PathBuf>,
}

/// A running simulator. Dropping it leaves the server running until its runtime ends; call [`SimHandle::shutdown`].
pub struct SimHandle {
    /// `https://127.0.0.1:PORT`
    pub url: String,
    pub ca_cert_path: PathBuf,
    /// `url` + `/_sim`
    pub control_url: String,
    pub state: Arc<SimState>,
    server: Handle<SocketAddr>,
    task: JoinHandle<std::io::Result<()>>,
    /// Keeps the CA file alive when it was written to a temporary directory.
    _ca_dir: Option<tempfile::TempDir>,
}

/// Starts the simulator on 127.0.0.1 and returns once it accepts connections.
pub async fn start(scenario: Scenario, options: StartOptions) -> anyhow::Result<SimHandle> {
    tls::install_ring_provider();
    let certs = tls::generate().context("generating the simulator's certificates")?;
    let (ca_cert_path, ca_dir) = write_ca(&certs.ca_pem, options.ca_out)?;
    let config = RustlsConfig::from_config(tls::server_config(&certs)?);

    let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, options.port.unwrap_or(0)))
        .with_context(|| format!("binding 127.0.0.1:{}", options.port.unwrap_or(0)))?;
    // tokio panics on a blocking std listener.
    listener.set_nonblocking(true)?;
    let port = listener.local_addr()?.port();

    let state = Arc::new(SimState::new(scenario));
    let _ = state.ca_pem.set(certs.ca_pem.clone());
    let server = Handle::new();
    let serve = axum_server::from_tcp_rustls(listener, config)?
        .handle(server.clone())
        .serve(router(Arc::clone(&state)).into_make_service());
    let task = tokio::spawn(serve);
    server.listening().await.context("the simulator failed to start listening")?;

    let url = format!("https://127.0.0.1:{port}");
    Ok(SimHandle { control_url: format!("{url}/_sim"), url, ca_cert_path, state, server, task, _ca_dir: ca_dir })
}

impl SimHandle {
    /// Stops accepting connections, lets open ones finish (bounded), and waits for the server task.
    pub async fn shutdown(self) {
        self.server.graceful_shutdown(Some(SHUTDOWN_GRACE));
        match self.task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("repave-sim: server ended with an error: {e}"),
            Err(e) => eprintln!("repave-sim: server task failed: {e}"),
        }
    }
}

/// The whole application: platform routes and `/_sim`, behind the fault layer, behind the request log.
pub fn router(state: Arc<SimState>) -> Router {
    Router::new()
        .merge(services::boshio::routes(Arc::clone(&state)))
        .merge(services::director::routes(Arc::clone(&state)))
        .merge(services::uaa::routes(Arc::clone(&state)))
        .merge(services::tkgi::routes(Arc::clone(&state)))
        .merge(services::k8s::routes(Arc::clone(&state)))
        .merge(services::deployments::routes(Arc::clone(&state)))
        .merge(services::releases::routes(Arc::clone(&state)))
        .merge(control::routes(Arc::clone(&state)))
        .layer(from_fn_with_state(Arc::clone(&state), shared::faults::middleware))
        .layer(from_fn_with_state(state, shared::reqlog::middleware))
}

fn write_ca(pem: &str, ca_out: Option<PathBuf>) -> anyhow::Result<(PathBuf, Option<tempfile::TempDir>)> {
    let (path, dir) = match ca_out {
        Some(path) => (path, None),
        None => {
            let dir = tempfile::Builder::new().prefix("repave-sim-").tempdir()?;
            (dir.path().join("ca.pem"), Some(dir))
        }
    };
    std::fs::write(&path, pem).with_context(|| format!("writing the CA certificate to {}", path.display()))?;
    Ok((path, dir))
}
