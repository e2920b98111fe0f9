//! Starting and stopping one simulator: its certificates, its listener on 127.0.0.1, the router that puts every
//! service behind the fault layer and the request log, and a graceful shutdown.

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

use crate::control;
use crate::scenario::Scenario;
use crate::services::{boshio, deployments, director, k8s, opsman, releases, tkgi, uaa};
use crate::shared::{faults, reqlog};
use crate::state::SimState;
use crate::tls;

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

    let state = Arc::new(SimState::new(scenario, certs.ca_pem.clone()));
    let server = Handle::new();
    let serve = axum_server::from_tcp_rustls(listener, config)?
        .handle(server.clone())
        .serve(router(&state).into_make_service());
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

/// The whole application: every service's routes and `/_sim`, behind the fault layer, behind the request log.
fn router(state: &SimState) -> Router {
    Router::new()
        .merge(boshio::routes(Arc::clone(&state.boshio)))
        .merge(director::routes(Arc::clone(&state.director)))
        .merge(uaa::routes(Arc::clone(&state.uaa)))
        .merge(tkgi::routes(Arc::clone(&state.fleet)))
        .merge(opsman::routes(Arc::clone(&state.opsman)))
        .merge(k8s::routes(Arc::clone(&state.kubernetes)))
        .merge(deployments::routes(Arc::clone(&state.deployments)))
        .merge(releases::routes(Arc::clone(&state.releases)))
        .merge(control::routes(state.shared.clone()))
        .layer(from_fn_with_state(Arc::clone(&state.shared.faults), faults::middleware))
        .layer(from_fn_with_state(Arc::clone(&state.shared.log), reqlog::middleware))
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
