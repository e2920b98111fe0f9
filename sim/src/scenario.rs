//! The scenario: what the simulated world looks like at start (one section per platform), how fast simulated time
//! runs, and which faults are armed. Read from YAML or JSON; unknown keys are errors so typos fail loudly.

use std::path::Path;

use anyhow::{Context, bail};
use serde::Deserialize;

use crate::services::{boshio, deployments, director, k8s, opsman, releases, tkgi, uaa};
use crate::shared::faults::FaultRule;

/// Everything the simulator is seeded with.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Scenario {
    /// Multiplies every simulated duration (upgrades, tasks, token lifetimes), so a 20-minute upgrade can take
    /// 200 ms with `time_scale: 0.000167`. Fault timings (stalls, rate limits) are not scaled: they exist to
    /// exercise a client's real-time timeouts.
    pub time_scale: f64,
    /// Faults armed from the start; more can be added at runtime through `POST /_sim/faults`.
    pub faults: Vec<FaultRule>,
    pub boshio: boshio::Config,
    pub director: director::Config,
    /// The director's deployments of the TKGI clusters: VM ages, process state, locks, certificates.
    pub deployments: deployments::Config,
    pub uaa: uaa::Config,
    pub tkgi: tkgi::Config,
    pub opsman: opsman::Config,
    pub kubernetes: k8s::Config,
    pub releases: releases::Config,
}

impl Default for Scenario {
    fn default() -> Self {
        Self {
            time_scale: 1.0,
            faults: Vec::new(),
            boshio: Default::default(),
            director: Default::default(),
            deployments: Default::default(),
            uaa: Default::default(),
            tkgi: Default::default(),
            opsman: Default::default(),
            kubernetes: Default::default(),
            releases: Default::default(),
        }
    }
}

impl Scenario {
    /// The world the binary serves when no scenario file is given.
    pub fn default_scenario() -> Self {
        Self::default()
    }

    /// Reads a scenario file: `.json` is parsed as JSON, anything else as YAML.
    pub fn from_file(path: impl AsRef<Path>) -> anyhow::Result<Self> {
        let path = path.as_ref();
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading scenario file {}", path.display()))?;
        let is_json = path.extension().is_some_and(|ext| ext.eq_ignore_ascii_case("json"));
        let parsed = if is_json { Self::from_json_str(&text) } else { Self::from_yaml_str(&text) };
        parsed.with_context(|| format!("invalid scenario file {}", path.display()))
    }

    /// Parses a YAML scenario (an empty document is the default scenario).
    pub fn from_yaml_str(text: &str) -> anyhow::Result<Self> {
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        let scenario: Self = serde_yaml_ng::from_str(text)?;
        scenario.validated()
    }

    /// Parses a JSON scenario.
    pub fn from_json_str(text: &str) -> anyhow::Result<Self> {
        let scenario: Self = serde_json::from_str(text)?;
        scenario.validated()
    }

    fn validated(self) -> anyhow::Result<Self> {
        if !(self.time_scale.is_finite() && self.time_scale > 0.0) {
            bail!("time_scale must be a positive number, got {}", self.time_scale);
        }
        for rule in &self.faults {
            rule.validate()?;
        }
        Ok(self)
    }
}
