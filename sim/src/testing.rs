//! [`RunningSim`]: the simulator for synchronous `#[test]` functions. It runs on its own thread with its own
//! tokio runtime, so a test needs no async code; its state is read directly, without HTTP.

use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::oneshot;

use crate::scenario::Scenario;
use crate::server::{SimHandle, StartOptions};
use crate::shared::faults::{ArmedFault, FaultRule};
use crate::shared::reqlog::RequestRecord;
use crate::state::SimState;

/// How long `drop` waits for the server thread before leaving it behind.
const STOP_WAIT: Duration = Duration::from_secs(10);
const START_WAIT: Duration = Duration::from_secs(30);

/// A simulator running on a background thread; dropping it shuts the server down.
pub struct RunningSim {
    url: String,
    ca_cert_path: std::path::PathBuf,
    control_url: String,
    state: Arc<SimState>,
    stop: Option<oneshot::Sender<()>>,
    stopped: mpsc::Receiver<()>,
    thread: Option<JoinHandle<()>>,
}

impl RunningSim {
    /// Starts a simulator from a YAML (or JSON) scenario; panics with the reason if it cannot.
    pub fn start(scenario_yaml: &str) -> Self {
        let scenario = Scenario::from_yaml_str(scenario_yaml).unwrap_or_else(|e| panic!("invalid scenario: {e:#}"));
        Self::start_with(scenario)
    }

    /// Starts a simulator from a scenario value; panics with the reason if it cannot.
    pub fn start_with(scenario: Scenario) -> Self {
        let (ready_tx, ready_rx) = mpsc::channel();
        let (stop_tx, stop_rx) = oneshot::channel();
        let (stopped_tx, stopped) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("repave-sim".to_owned())
            .spawn(move || serve(scenario, ready_tx, stop_rx, stopped_tx))
            .expect("spawning the simulator thread");
        let ready = ready_rx.recv_timeout(START_WAIT).unwrap_or_else(|e| panic!("simulator did not start: {e}"));
        let handle = ready.unwrap_or_else(|e| panic!("simulator failed to start: {e}"));
        Self {
            url: handle.url,
            ca_cert_path: handle.ca_cert_path,
            control_url: handle.control_url,
            state: handle.state,
            stop: Some(stop_tx),
            stopped,
            thread: Some(thread),
        }
    }

    /// `https://127.0.0.1:PORT`
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The CA certificate (PEM) clients must trust.
    pub fn ca_cert_path(&self) -> &Path {
        &self.ca_cert_path
    }

    /// `url()` + `/_sim`
    pub fn control_url(&self) -> &str {
        &self.control_url
    }

    pub fn state(&self) -> &Arc<SimState> {
        &self.state
    }

    pub fn requests(&self) -> Vec<RequestRecord> {
        self.state.requests()
    }

    pub fn clear_requests(&self) {
        self.state.clear_requests();
    }

    pub fn add_fault(&self, rule: FaultRule) {
        self.state.add_fault(rule);
    }

    pub fn clear_faults(&self) {
        self.state.clear_faults();
    }

    pub fn faults(&self) -> Vec<ArmedFault> {
        self.state.faults()
    }
}

/// What the server thread reports once it is listening.
struct Ready {
    url: String,
    ca_cert_path: std::path::PathBuf,
    control_url: String,
    state: Arc<SimState>,
}

fn serve(
    scenario: Scenario,
    ready: mpsc::Sender<Result<Ready, String>>,
    stop: oneshot::Receiver<()>,
    stopped: mpsc::Sender<()>,
) {
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            let _ = ready.send(Err(format!("building the runtime: {e}")));
            return;
        }
    };
    runtime.block_on(async move {
        let handle: SimHandle = match crate::server::start(scenario, StartOptions::default()).await {
            Ok(h) => h,
            Err(e) => {
                let _ = ready.send(Err(format!("{e:#}")));
                return;
            }
        };
        let report = Ready {
            url: handle.url.clone(),
            ca_cert_path: handle.ca_cert_path.clone(),
            control_url: handle.control_url.clone(),
            state: Arc::clone(&handle.state),
        };
        let _ = ready.send(Ok(report));
        // A dropped sender (the RunningSim vanished without Drop, e.g. a leaked value) also means stop.
        let _ = stop.await;
        handle.shutdown().await;
    });
    // Streams that outlived the graceful shutdown are cut here rather than holding the thread.
    runtime.shutdown_timeout(Duration::from_secs(1));
    let _ = stopped.send(());
}

impl Drop for RunningSim {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        // Join only once the thread said it is done, so a wedged server cannot hang the test run.
        match self.stopped.recv_timeout(STOP_WAIT) {
            Ok(()) => {
                if let Some(thread) = self.thread.take() {
                    let _ = thread.join();
                }
            }
            Err(_) => {
                eprintln!("repave-sim: server thread did not stop within {STOP_WAIT:?}; leaving it")
            }
        }
    }
}
