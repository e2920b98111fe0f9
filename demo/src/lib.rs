//! repave-demo (run by `ci/demo`): the main job of repave, end to end, on the simulator.
//!
//! It starts repave-sim in-process with `sim/scenarios/demo.yaml` (a vSphere foundation: bosh.io with two stemcell
//! lines, Ops Manager with the TKGI tile, a BOSH director, a 12-cluster TKGI platform where one upgrade fails), then
//! follows a new stemcell the way a TKGI foundation takes it — into Ops Manager, Apply Changes with the "Upgrade all
//! clusters" errand off, then the fleet in canaries and waves — running the real `check`, `in` and `out` binaries
//! exactly as Concourse would: one JSON request on stdin, a fresh directory as the argument of
//! `in`/`out`, Concourse's `BUILD_*` variables for `in`/`out` and an otherwise empty environment. Each step prints
//! the request (secrets as `***`), the binary's stderr (what the build log shows) as it arrives, its exit status
//! and stdout, and a short reading of the answer, so a reader learns the protocol by watching.
//!
//! The demo also knows what the scenario must produce (the new stemcell is found, the fleet put fails on exactly
//! one cluster and stops its wave, …). Anything else is reported as a surprise and makes [`run`] return `false`:
//! the test that runs the demo (`tests/integration/demo.rs`) thereby catches a demo that no longer shows what it
//! claims.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};

use repave_sim::Scenario;
use repave_sim::testing::RunningSim;

/// The demo's world; see the file's comments.
pub const SCENARIO: &str = include_str!("../../sim/scenarios/demo.yaml");
/// The desired fleet file the fleet puts apply.
pub const FLEET_FILE: &str = include_str!("../../sim/scenarios/demo-fleet.yml");

const JAMMY: &str = "bosh-vsphere-esxi-ubuntu-jammy-go_agent";
const TKGI: &str = "pivotal-container-service";
const WINDOWS: &str = "bosh-vsphere-esxi-windows2019-go_agent";
/// The cluster whose upgrade the scenario makes fail.
const FAILING: &str = "prod-eu-2";
/// Prod clusters after the failing one in name order: with `on_failure: stop` none of them may start.
const NOT_STARTED: [&str; 4] = ["prod-eu-3", "prod-us-1", "prod-us-2", "prod-us-3"];
const PIPELINE: &str = "repave-demo";
const ATC_EXTERNAL_URL: &str = "https://ci.example.com";
/// A binary that runs longer than this is killed and counted as a surprise, so a hang cannot stall the demo.
const STEP_TIMEOUT: Duration = Duration::from_secs(180);

/// Where the three resource binaries are.
#[derive(Debug, Clone)]
pub struct Binaries {
    pub check: PathBuf,
    pub get: PathBuf,
    pub put: PathBuf,
}

impl Binaries {
    /// `DIR/check`, `DIR/in` and `DIR/out`, as in `target/release` (or `/opt/resource` in the image).
    pub fn in_dir(dir: &Path) -> Self {
        Binaries { check: dir.join("check"), get: dir.join("in"), put: dir.join("out") }
    }
}

/// What to run the demo with.
#[derive(Debug, Clone)]
pub struct Options {
    pub binaries: Binaries,
    /// The scenario YAML; [`SCENARIO`] for the real demo. Tests pass a changed world to prove the demo notices.
    pub scenario: String,
}

impl Options {
    pub fn new(binaries: Binaries) -> Self {
        Options { binaries, scenario: SCENARIO.to_owned() }
    }
}

/// Runs the demo, writing the story to `out`. `Ok(true)`: everything behaved as the scenario predicts;
/// `Ok(false)`: it ran, but something did not (each surprise is printed where it happened, and summed up at
/// the end); `Err`: the demo could not run at all (e.g. a binary is missing).
pub fn run(options: &Options, out: &mut dyn Write) -> anyhow::Result<bool> {
    for binary in [&options.binaries.check, &options.binaries.get, &options.binaries.put] {
        if !binary.is_file() {
            bail!("{} does not exist; build the binaries first (ci/demo does)", binary.display());
        }
    }
    let scenario = Scenario::from_yaml_str(&options.scenario).context("parsing the demo scenario")?;
    let secrets: Vec<String> = scenario
        .uaa
        .clients
        .iter()
        .map(|c| c.secret.clone())
        .chain(scenario.uaa.users.iter().map(|u| u.password.clone()))
        .filter(|s| !s.is_empty())
        .collect();
    let sim = RunningSim::start_with(scenario);
    let ca = std::fs::read_to_string(sim.ca_cert_path()).context("reading the simulator's CA")?;
    let work = tempfile::Builder::new().prefix("repave-demo-").tempdir().context("creating a work directory")?;
    let mut demo = Demo {
        out,
        options,
        sim: &sim,
        ca,
        secrets,
        work: work.path().to_owned(),
        opsman_dir: None,
        surprises: Vec::new(),
    };
    demo.story()?;
    Ok(demo.surprises.is_empty())
}

/// Which binary a step runs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Script {
    Check,
    In,
    Out,
}

impl Script {
    fn name(self) -> &'static str {
        match self {
            Script::Check => "check",
            Script::In => "in",
            Script::Out => "out",
        }
    }
}

/// The build a get or put runs in: what Concourse puts into `BUILD_*`.
struct Build {
    id: u32,
    name: u32,
    job: &'static str,
}

/// What a binary did.
struct Ran {
    status: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Ran {
    fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim()).unwrap_or(Value::Null)
    }
}

struct Demo<'a> {
    out: &'a mut dyn Write,
    options: &'a Options,
    sim: &'a RunningSim,
    ca: String,
    /// Secret values from the scenario: never printed, and a binary that prints one is a surprise.
    secrets: Vec<String>,
    work: PathBuf,
    /// Where the opsman get wrote its files (`version`, `stemcell`), mounted into the fleet puts.
    opsman_dir: Option<PathBuf>,
    surprises: Vec<String>,
}

impl Demo<'_> {
    fn story(&mut self) -> anyhow::Result<()> {
        self.intro()?;
        self.stemcell_half()?;
        self.opsman_half()?;
        self.fleet_half()?;
        self.outro()
    }

    /// Find a new stemcell, fetch and verify it, import it into Ops Manager for the TKGI tile (job upload-stemcell).
    fn stemcell_half(&mut self) -> anyhow::Result<()> {
        self.chapter("A new stemcell: check → get → put into Ops Manager (job upload-stemcell)")?;
        let jammy = self.stemcell_source(JAMMY);
        let ran = self.step(
            "check: has bosh.io published a newer Jammy stemcell?",
            "jammy-stemcell",
            Script::Check,
            &json!({"source": jammy, "version": {"version": "1.505"}}),
            None,
            None,
        )?;
        self.note(
            "Concourse sends the version it knows last (1.505); check answers it and every newer one, oldest first.",
        )?;
        let versions = versions_of(&ran.json());
        self.expect(ran.status == Some(0) && versions == ["1.505", "1.506"], "check finds 1.506 after 1.505")?;
        self.read(&format!(
            "versions {versions:?}: 1.506 is new, so Concourse records it and triggers upload-stemcell"
        ))?;

        let windows = self.stemcell_source(WINDOWS);
        let ran = self.step(
            "check: the second stemcell line, Windows 2019",
            "windows-stemcell",
            Script::Check,
            &json!({"source": windows, "version": {"version": "2019.86"}}),
            None,
            None,
        )?;
        let versions = versions_of(&ran.json());
        self.expect(ran.status == Some(0) && versions == ["2019.86"], "check finds nothing newer than 2019.86")?;
        self.read(&format!("versions {versions:?}: only the known version, so nothing new and nothing triggers"))?;

        let get_dir = self.fresh_dir("get-jammy-stemcell")?;
        let build = Build { id: 4101, name: 17, job: "upload-stemcell" };
        let ran = self.step(
            "get: download and verify Jammy 1.506",
            "jammy-stemcell",
            Script::In,
            &json!({"source": jammy, "version": {"version": "1.506"}, "params": {}}),
            Some(&get_dir),
            Some(&build),
        )?;
        let answer = ran.json();
        self.expect(
            ran.status == Some(0) && answer["version"] == json!({"version": "1.506"}),
            "get answers version 1.506",
        )?;
        self.expect(get_dir.join("stemcell.tgz").is_file(), "get wrote the verified stemcell.tgz")?;
        self.metadata(&answer)?;
        self.files(&get_dir)?;

        // Concourse mounts each input of a put as a sub-directory named after it.
        let put_dir = self.fresh_dir("put-jammy-stemcell")?;
        link_tree(&get_dir, &put_dir.join("jammy-stemcell"))?;
        let ran = self.step(
            "put: import it into Ops Manager and assign it to the TKGI tile",
            "jammy-stemcell",
            Script::Out,
            &json!({"source": jammy, "params": {"from": "jammy-stemcell", "products": [TKGI]}}),
            Some(&put_dir),
            Some(&build),
        )?;
        self.note("The put's directory holds the get's files as jammy-stemcell/, as Concourse mounts inputs.")?;
        let staged = self.sim.state().opsman.staged_stemcells(TKGI);
        self.expect(
            ran.status == Some(0)
                && ran.json()["version"] == json!({"version": "1.506"})
                && staged == ["ubuntu-jammy/1.506"],
            "put imports 1.506 into Ops Manager and stages it on the TKGI tile",
        )?;
        self.read(
            "Ops Manager has Jammy 1.506, staged on the TKGI tile. Not on the director: the TKGI broker builds clusters \
             from the tile's stemcell, so an upload to the director alone would never reach them",
        )
    }

    /// Apply Changes for the TKGI tile with its errand off, then the get the fleet puts read (job apply-changes).
    fn opsman_half(&mut self) -> anyhow::Result<()> {
        self.chapter("Ops Manager: check → put (Apply Changes, errand off) → get (job apply-changes)")?;
        let opsman = self.opsman_source();
        let ran = self.step(
            "check: what has Ops Manager deployed?",
            "opsman",
            Script::Check,
            &json!({"source": opsman}),
            None,
            None,
        )?;
        let before = ran.json()[0].clone();
        self.expect(
            ran.status == Some(0) && before[format!("{TKGI}.stemcell")] == "ubuntu-jammy/1.505",
            "the TKGI tile is deployed on 1.505",
        )?;
        self.read(&format!("opsman version {}: the tile's version and its deployed stemcell", compact(&before)))?;

        let build = Build { id: 4102, name: 5, job: "apply-changes" };
        let put_dir = self.fresh_dir("put-opsman")?;
        let ran = self.step(
            "put: Apply Changes for the TKGI tile",
            "opsman",
            Script::Out,
            &json!({"source": opsman, "params": {"pre_deploy_check": true, "poll_interval": "100ms"}}),
            Some(&put_dir),
            Some(&build),
        )?;
        self.note("poll_interval 100ms: the simulated Apply Changes takes 0.24 s; the default (10s) suits real ones.")?;
        let after = ran.json()["version"].clone();
        let untouched = self.sim.state().counter("tkgi.upgrade_starts") == 0;
        self.expect(
            ran.status == Some(0) && after[format!("{TKGI}.stemcell")] == "ubuntu-jammy/1.506" && untouched,
            "Apply Changes deploys the tile on 1.506 and no cluster is upgraded (the errand is off)",
        )?;
        self.read(
            "the errand upgrade-all-service-instances was off, so Ops Manager upgraded no cluster: the TKGI API VMs run \
             the tile's new stemcell, the clusters are still on 1.505. The fleet put below rolls them, canaries first",
        )?;

        let get_dir = self.fresh_dir("get-opsman")?;
        let ran = self.step(
            "get: the targets for the fleet",
            "opsman",
            Script::In,
            &json!({"source": opsman, "version": after, "params": {}}),
            Some(&get_dir),
            Some(&build),
        )?;
        let read = |name: &str| std::fs::read_to_string(get_dir.join(name)).unwrap_or_default();
        self.expect(
            ran.status == Some(0) && read("version").trim() == "1.19.2-build.10" && read("stemcell").trim() == "1.506",
            "the get writes version 1.19.2-build.10 and stemcell 1.506",
        )?;
        self.files(&get_dir)?;
        self.block("certificates.md", &read("certificates.md"))?;
        self.opsman_dir = Some(get_dir);
        Ok(())
    }

    /// Observe the fleet, plan with a dry run, roll canaries and waves, report (job upgrade-fleet).
    fn fleet_half(&mut self) -> anyhow::Result<()> {
        self.chapter("The fleet: check → dry run → canaries and waves → report (job upgrade-fleet)")?;
        let fleet = self.fleet_source();
        let ran = self.step(
            "check: what state is the fleet in?",
            "fleet",
            Script::Check,
            &json!({"source": fleet}),
            None,
            None,
        )?;
        self.note("No `version` in the request: the first check of a resource. It answers only the current state.")?;
        let before = ran.json()[0].clone();
        self.expect(
            ran.status == Some(0) && before["clusters"] == "12" && before["behind"] == "0",
            "the fleet check sees 12 clusters, all on one TKGI version",
        )?;
        self.read(&format!(
            "fleet version {}: a digest of every cluster's versions and states, plus readable counts",
            compact(&before)
        ))?;
        self.read(
            "behind 0: all 12 run the same TKGI version. The platform's own version (the put's target) is not part \
             of the check",
        )?;

        let build = Build { id: 4103, name: 8, job: "upgrade-fleet" };
        let dry_dir = self.fleet_put_dir("put-fleet-dry-run")?;
        let ran = self.step(
            "put (dry run): the plan, and nothing changes",
            "fleet",
            Script::Out,
            &json!({"source": fleet, "params": fleet_params(json!({"dry_run": true}))}),
            Some(&dry_dir),
            Some(&build),
        )?;
        self.note(
            "fleet-repo/ is the fleet file's repository (a git resource in a pipeline) and opsman/ the opsman get above, \
             both mounted as inputs: the targets are the tile's version and stemcell",
        )?;
        let dry = ran.json();
        self.expect(
            ran.status == Some(0) && dry["version"] == before && self.sim.state().counter("tkgi.upgrade_starts") == 0,
            "the dry run answers the unchanged fleet version and starts nothing",
        )?;
        self.metadata(&dry)?;
        match std::fs::read_to_string(dry_dir.join("plan.md")) {
            Ok(plan) => self.block("plan.md (what a pull-request comment would show)", &plan)?,
            Err(e) => self.surprise(&format!("the dry run wrote no plan.md: {e}"))?,
        }
        self.fleet_rollout(&fleet, &before)
    }

    /// The real put (canaries, waves, the failing prod cluster), then check and the report get.
    fn fleet_rollout(&mut self, fleet: &serde_json::Value, before: &serde_json::Value) -> anyhow::Result<()> {
        let put_dir = self.fleet_put_dir("put-fleet")?;
        let build = Build { id: 4104, name: 9, job: "upgrade-fleet" };
        let ran = self.step(
            "put: canaries one at a time, then the dev and prod waves",
            "fleet",
            Script::Out,
            &json!({"source": fleet, "params": fleet_params(json!({"poll_interval": "250ms"}))}),
            Some(&put_dir),
            Some(&build),
        )?;
        self.note("poll_interval 250ms: the simulated upgrades take 1.2 s; the default (15s) suits real ones.")?;
        self.expect(ran.status == Some(1) && ran.stdout.trim().is_empty(), "the put fails: exit 1, nothing on stdout")?;
        self.expect(ran.stderr.contains(FAILING), &format!("the put names {FAILING}"))?;
        self.fleet_counters()?;
        self.read(&format!(
            "exit 1 is the expected result: {FAILING} failed, so the prod wave stopped. Concourse marks the build \
             failed and records no version; nothing later in this job runs"
        ))?;

        let ran = self.step(
            "check: the fleet has changed",
            "fleet",
            Script::Check,
            &json!({"source": fleet, "version": before}),
            None,
            None,
        )?;
        self.note("Concourse sends the version it knows; a fleet check answers only the current state (TKGI keeps no history).")?;
        let after = ran.json().as_array().and_then(|list| list.last().cloned()).unwrap_or(Value::Null);
        self.expect(
            ran.status == Some(0) && after["digest"].is_string() && after["digest"] != before["digest"],
            "the next check reports a new fleet version",
        )?;
        self.read(&format!("new fleet version {}: the report job (or a human) sees what happened", compact(&after)))?;

        let get_dir = self.fresh_dir("get-fleet")?;
        let build = Build { id: 4105, name: 3, job: "fleet-report" };
        let ran = self.step(
            "get: the fleet report",
            "fleet",
            Script::In,
            &json!({"source": fleet, "version": after, "params": {}}),
            Some(&get_dir),
            Some(&build),
        )?;
        self.expect(ran.status == Some(0), "the report get succeeds")?;
        self.files(&get_dir)?;
        match std::fs::read_to_string(get_dir.join("fleet.md")) {
            Ok(report) => {
                let failed_row = report.lines().any(|l| l.contains(FAILING) && l.contains("failed"));
                self.expect(failed_row, &format!("fleet.md shows {FAILING} as failed"))?;
                self.block("fleet.md (post it to chat as is)", &report)?;
                self.read(
                    "the 7 upgraded clusters run stemcell 1.506, the one Ops Manager applied to the tile above. \
                     Re-running the job is safe: clusters at the target are skipped, and nothing starts while \
                     prod-eu-2's failure stands (under on_failure: stop): `repair: true` retries it, then the 4 not \
                     started are upgraded",
                )?;
            }
            Err(e) => self.surprise(&format!("the report get wrote no fleet.md: {e}"))?,
        }
        Ok(())
    }

    fn intro(&mut self) -> anyhow::Result<()> {
        let b = &self.options.binaries;
        writeln!(
            self.out,
            "repave demo: the main job of repave on the built-in simulator\n\n\
             repave-sim is serving, at {url}, a vSphere foundation: bosh.io with two stemcell lines (Ubuntu Jammy,\n\
             Windows 2019), Ops Manager with the TKGI tile 1.19.2 on stemcell 1.505, a BOSH director, and 12 TKGI\n\
             clusters still on 1.18.5. A new stemcell takes the path a TKGI foundation needs: into Ops Manager,\n\
             Apply Changes with the \"Upgrade all clusters\" errand off, then the clusters in canaries and waves.\n\
             One cluster ({FAILING}) will fail its upgrade. The world is sim/scenarios/demo.yaml.\n\n\
             Each step below runs a real resource binary the way Concourse does:\n  \
             check: {check}\n  in:    {get}\n  out:   {put}\n\
             with the request as JSON on stdin, a fresh directory as the argument of in/out, and Concourse's\n\
             BUILD_* variables. Secrets show as ***; the simulator's CA certificate is abbreviated.",
            url = self.sim.url(),
            check = b.check.display(),
            get = b.get.display(),
            put = b.put.display(),
        )?;
        Ok(())
    }

    fn outro(&mut self) -> anyhow::Result<()> {
        self.chapter("What next")?;
        writeln!(
            self.out,
            "The same steps in real pipelines, ready for `fly set-pipeline` (each with a *.vars.example.yml):\n  \
             pipelines/stemcell-to-fleet.yml   stemcell into Ops Manager, Apply Changes (errand off), then canaries and\n  \
                                               one job per wave in a nightly window\n  \
             pipelines/gitops-fleet.yml        a fleet file in git, as here: dry run on change, apply, nightly repair\n  \
             pipelines/promotion.yml           dev → staging → prod, one Kubernetes minor at a time\n  \
             pipelines/self-updating.yml       a pipeline that sets itself and one pipeline per environment\n\
             Reference for every source field and param: docs/stemcell.md, docs/opsman.md, docs/fleet.md,\n\
             docs/kubernetes.md; why the errand is off: docs/tkgi-stemcells.md.\n"
        )?;
        if self.surprises.is_empty() {
            writeln!(self.out, "demo: everything behaved as the scenario predicts (the failed put included).")?;
        } else {
            writeln!(self.out, "demo: {} surprise(s), the scenario predicted otherwise:", self.surprises.len())?;
            for s in &self.surprises {
                writeln!(self.out, "  ✗ {s}")?;
            }
        }
        Ok(())
    }

    fn chapter(&mut self, title: &str) -> anyhow::Result<()> {
        writeln!(self.out, "\n\n══ {title} {}", "═".repeat(110usize.saturating_sub(title.chars().count())))?;
        Ok(())
    }

    /// Runs one binary as Concourse would and prints the exchange; the caller judges the answer.
    fn step(
        &mut self,
        title: &str,
        resource: &str,
        script: Script,
        request: &Value,
        dir: Option<&Path>,
        build: Option<&Build>,
    ) -> anyhow::Result<Ran> {
        let b = &self.options.binaries;
        let binary = match script {
            Script::Check => b.check.clone(),
            Script::In => b.get.clone(),
            Script::Out => b.put.clone(),
        };
        let env = build.map(build_env).unwrap_or_default();
        writeln!(self.out, "\n── {title}  (resource {resource})")?;
        self.show_request(&binary, script, request, dir, &env)?;
        let (ran, timed_out) = self.run_streaming(&binary, request, dir, &env)?;
        let code = ran.status.map_or_else(|| "killed".to_owned(), |c| c.to_string());
        let stdout_shown =
            if ran.stdout.trim().is_empty() { "(empty)".to_owned() } else { self.mask(ran.stdout.trim()) };
        writeln!(self.out, "   exit {code} · stdout: {stdout_shown}")?;
        if timed_out {
            self.surprise(&format!("{} did not finish within {STEP_TIMEOUT:?}", script.name()))?;
        }
        let leaked = self.secrets.iter().any(|s| ran.stdout.contains(s.as_str()) || ran.stderr.contains(s.as_str()));
        if leaked {
            self.surprise(&format!("{} printed a secret (masked above)", script.name()))?;
        }
        Ok(ran)
    }

    /// The command line, directory, environment and stdin, as Concourse would supply them.
    fn show_request(
        &mut self,
        binary: &Path,
        script: Script,
        request: &Value,
        dir: Option<&Path>,
        env: &[(&'static str, String)],
    ) -> anyhow::Result<()> {
        let argument = if script == Script::Check { "" } else { " DIR" };
        let concourse_dir = match script {
            Script::Check => "",
            Script::In => " /tmp/build/get",
            Script::Out => " /tmp/build/put",
        };
        writeln!(
            self.out,
            "   $ {}{argument} < request.json      (Concourse: /opt/resource/{}{concourse_dir})",
            binary.display(),
            script.name(),
        )?;
        if let Some(dir) = dir {
            writeln!(self.out, "   DIR = {}", dir.display())?;
        }
        if env.is_empty() {
            writeln!(self.out, "   env: none (Concourse gives check no BUILD_* variables)")?;
        } else {
            let shown: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
            writeln!(self.out, "   env: {}", shown.join(" "))?;
        }
        writeln!(self.out, "   stdin:")?;
        let shown = serde_json::to_string_pretty(&displayable(request)).expect("JSON values serialize");
        for line in shown.lines() {
            writeln!(self.out, "     {line}")?;
        }
        Ok(())
    }

    /// Runs the binary, showing stderr line by line as it arrives (so a rollout can be watched as it
    /// happens); kills it after [`STEP_TIMEOUT`]. Returns what it printed and whether it was killed.
    fn run_streaming(
        &mut self,
        binary: &Path,
        request: &Value,
        dir: Option<&Path>,
        env: &[(&'static str, String)],
    ) -> anyhow::Result<(Ran, bool)> {
        writeln!(self.out, "   stderr (the build log):")?;
        let mut command = Command::new(binary);
        // Concourse containers carry no host environment; an inherited proxy would also route 127.0.0.1 away.
        command.env_clear().envs(env.iter().map(|(k, v)| (*k, v.as_str())));
        command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        if let Some(dir) = dir {
            command.arg(dir);
        }
        let mut child = command.spawn().with_context(|| format!("starting {}", binary.display()))?;
        let mut stdin = child.stdin.take().expect("stdin is piped");
        // A binary that fails early closes stdin; a broken pipe then is its answer, not ours.
        let _ = stdin.write_all(request.to_string().as_bytes());
        drop(stdin);
        let mut stdout = child.stdout.take().expect("stdout is piped");
        let stdout_reader = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stdout.read_to_string(&mut text);
            text
        });
        let rx = lines_of(child.stderr.take().expect("stderr is piped"));
        let deadline = Instant::now() + STEP_TIMEOUT;
        let mut stderr_text = String::new();
        let mut timed_out = false;
        loop {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) => {
                    writeln!(self.out, "     │ {}", self.mask(&line))?;
                    stderr_text.push_str(&line);
                    stderr_text.push('\n');
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    timed_out = true;
                    let _ = child.kill();
                    break;
                }
            }
        }
        if stderr_text.is_empty() {
            writeln!(self.out, "     (nothing)")?;
        }
        let status = child.wait().context("waiting for the binary")?;
        let stdout = stdout_reader.join().unwrap_or_default();
        Ok((Ran { status: status.code(), stdout, stderr: stderr_text }, timed_out))
    }

    /// The fleet put's directory: the fleet file as the `fleet-repo` input, the opsman get as `opsman`.
    fn fleet_put_dir(&self, name: &str) -> anyhow::Result<PathBuf> {
        let dir = self.fresh_dir(name)?;
        std::fs::create_dir(dir.join("fleet-repo"))?;
        std::fs::write(dir.join("fleet-repo/fleet.yml"), FLEET_FILE)?;
        if let Some(opsman) = &self.opsman_dir {
            link_tree(opsman, &dir.join("opsman"))?;
        }
        Ok(dir)
    }

    fn fresh_dir(&self, name: &str) -> anyhow::Result<PathBuf> {
        let dir = self.work.join(name);
        std::fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(dir)
    }

    fn stemcell_source(&self, name: &str) -> Value {
        json!({
            "kind": "stemcell",
            "name": name,
            // The simulator stands in for bosh.io (a mirror would be set the same way).
            "api_url": self.sim.url(),
            "ca_cert": self.ca,
            "opsman": self.opsman_login(),
        })
    }

    fn fleet_source(&self) -> Value {
        json!({
            "kind": "fleet",
            "api_url": self.sim.url(),
            "uaa_url": self.sim.url(),
            "client_id": "tkgi-ci",
            "client_secret": self.secret_of("tkgi-ci"),
            "ca_cert": self.ca,
            "director": self.director(),
        })
    }

    fn opsman_source(&self) -> Value {
        json!({
            "kind": "opsman",
            "url": self.sim.url(),
            "client_id": "opsman-ci",
            "client_secret": self.secret_of("opsman-ci"),
            "ca_cert": self.ca,
        })
    }

    fn opsman_login(&self) -> Value {
        json!({"url": self.sim.url(), "client_id": "opsman-ci", "client_secret": self.secret_of("opsman-ci"), "ca_cert": self.ca})
    }

    fn director(&self) -> Value {
        json!({"url": self.sim.url(), "client": "bosh-ci", "client_secret": self.secret_of("bosh-ci"), "ca_cert": self.ca})
    }

    fn secret_of(&self, client: &str) -> String {
        let clients = &self.sim.state().scenario.uaa.clients;
        clients.iter().find(|c| c.id == client).map(|c| c.secret.clone()).unwrap_or_default()
    }

    fn mask(&self, text: &str) -> String {
        mask(&self.secrets, text)
    }

    fn expect(&mut self, held: bool, what: &str) -> anyhow::Result<()> {
        if held { Ok(()) } else { self.surprise(&format!("expected: {what}")) }
    }

    fn surprise(&mut self, what: &str) -> anyhow::Result<()> {
        writeln!(self.out, "   ✗ SURPRISE: {what}")?;
        self.surprises.push(what.to_owned());
        Ok(())
    }

    fn note(&mut self, text: &str) -> anyhow::Result<()> {
        writeln!(self.out, "   note: {text}")?;
        Ok(())
    }

    fn read(&mut self, text: &str) -> anyhow::Result<()> {
        writeln!(self.out, "   → {text}")?;
        Ok(())
    }

    fn metadata(&mut self, answer: &Value) -> anyhow::Result<()> {
        let Some(fields) = answer["metadata"].as_array() else { return Ok(()) };
        let pairs: Vec<String> = fields
            .iter()
            .map(|f| format!("{}={}", f["name"].as_str().unwrap_or("?"), f["value"].as_str().unwrap_or("?")))
            .collect();
        writeln!(self.out, "   → metadata (shown on the build page): {}", pairs.join(", "))?;
        Ok(())
    }

    fn files(&mut self, dir: &Path) -> anyhow::Result<()> {
        let mut listing = Vec::new();
        list_files(dir, dir, &mut listing)?;
        writeln!(self.out, "   → files in DIR: {}", listing.join(", "))?;
        Ok(())
    }

    fn block(&mut self, title: &str, text: &str) -> anyhow::Result<()> {
        writeln!(self.out, "   → {title}:")?;
        for line in text.lines() {
            writeln!(self.out, "       {}", self.mask(line))?;
        }
        Ok(())
    }

    /// What the simulator saw during the rollout: the evidence behind "the failure stopped its wave".
    fn fleet_counters(&mut self) -> anyhow::Result<()> {
        let state = self.sim.state();
        let starts = state.counter("tkgi.upgrade_starts");
        let peak = state.high_water("tkgi.upgrades_in_flight");
        let after_failure = state.counter("tkgi.starts_after_failure_seen");
        let untouched: Vec<&str> =
            NOT_STARTED.iter().copied().filter(|n| state.counter(&format!("tkgi.upgrade_starts.{n}")) == 0).collect();
        writeln!(
            self.out,
            "   → repave-sim saw: {starts} upgrade starts, at most {peak} at once, {after_failure} started after \
             the failure was visible; never started: {}",
            if untouched.is_empty() { "none".to_owned() } else { untouched.join(", ") }
        )?;
        // 2 canaries + 4 dev + prod-eu-1 and prod-eu-2 (two at a time); the rest of prod must wait.
        self.expect(
            starts == 8 && peak <= 2 && after_failure == 0,
            "8 upgrades, at most 2 at once, none after the failure",
        )?;
        self.expect(untouched.len() == NOT_STARTED.len(), "the rest of the prod wave is never started")
    }
}

/// The fleet puts' params: the fleet file, and the targets the opsman get wrote, plus `extra`.
fn fleet_params(extra: Value) -> Value {
    let mut params = json!({"desired": "fleet-repo/fleet.yml", "target_version_file": "opsman/version",
                            "target_stemcell_file": "opsman/stemcell"});
    params.as_object_mut().expect("an object").extend(extra.as_object().expect("an object").clone());
    params
}

/// The lines of `reader`, read on their own thread, as they arrive.
fn lines_of(reader: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(reader).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// The variables Concourse sets for a get or put in this demo's pipeline (it never passes the resource name).
fn build_env(build: &Build) -> Vec<(&'static str, String)> {
    vec![
        ("BUILD_ID", build.id.to_string()),
        ("BUILD_NAME", build.name.to_string()),
        ("BUILD_JOB_NAME", build.job.to_owned()),
        ("BUILD_PIPELINE_NAME", PIPELINE.to_owned()),
        ("BUILD_TEAM_NAME", "main".to_owned()),
        ("ATC_EXTERNAL_URL", ATC_EXTERNAL_URL.to_owned()),
    ]
}

/// The request as printed: secret-like fields (the names repave itself treats as secret) become `***`, and the
/// CA certificate is abbreviated because 1 KiB of base64 teaches nothing.
fn displayable(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let shown = if is_secret_key(k) {
                        json!("***")
                    } else if k == "ca_cert" {
                        json!(format!("<PEM: the simulator's CA, {} bytes>", v.as_str().map_or(0, str::len)))
                    } else {
                        displayable(v)
                    };
                    (k.clone(), shown)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(displayable).collect()),
        other => other.clone(),
    }
}

/// Output from a binary with every known secret value replaced, as Concourse's own redaction would do.
fn mask(secrets: &[String], text: &str) -> String {
    secrets.iter().fold(text.to_owned(), |t, s| t.replace(s.as_str(), "***"))
}

/// repave's own rule for secret-like fields (docs/common.md, "Secrets"): anything mentioning "secret", and
/// `password`, `token`, `private_key`, alone or as a `_`-suffix, in any case.
fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    key.contains("secret")
        || ["password", "token", "private_key"].iter().any(|k| key == *k || key.ends_with(&format!("_{k}")))
}

fn versions_of(answer: &Value) -> Vec<String> {
    answer
        .as_array()
        .map(|list| list.iter().filter_map(|v| v["version"].as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

fn compact(value: &Value) -> String {
    serde_json::to_string(value).expect("JSON values serialize")
}

/// Hard-links (or copies, across file systems) the files of `from` into a new directory `to`.
fn link_tree(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            link_tree(&entry.path(), &target)?;
        } else if std::fs::hard_link(entry.path(), &target).is_err() {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// `name (size)` of every file under `dir`, relative to `root`, sorted.
fn list_files(root: &Path, dir: &Path, out: &mut Vec<String>) -> anyhow::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            list_files(root, &path, out)?;
        } else {
            let name = path.strip_prefix(root).unwrap_or(&path).display().to_string();
            out.push(format!("{name} ({})", size(entry.metadata()?.len())));
        }
    }
    Ok(())
}

fn size(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / f64::from(1 << 20)),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / f64::from(1 << 10)),
        b => format!("{b} B"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_files_parse() {
        let scenario = Scenario::from_yaml_str(SCENARIO).unwrap();
        assert_eq!(scenario.tkgi.clusters.len(), 12);
        assert!(scenario.tkgi.clusters.iter().any(|c| c.name == FAILING && c.upgrade_failures == 1));
        let fleet: serde_yaml_ng::Value = serde_yaml_ng::from_str(FLEET_FILE).unwrap();
        assert_eq!(fleet["clusters"].as_sequence().unwrap().len(), 12);
    }

    #[test]
    fn secret_like_fields_are_masked_and_the_ca_is_abbreviated() {
        let shown = displayable(&json!({"source": {"client_secret": "hunter2", "director": {"client_secret": "x"},
            "password": "p", "ca_cert": "PEM", "name": "n"}}));
        assert_eq!(
            shown,
            json!({"source": {"client_secret": "***", "director": {"client_secret": "***"}, "password": "***",
                "ca_cert": "<PEM: the simulator's CA, 3 bytes>", "name": "n"}})
        );
        assert_eq!(mask(&["hunter2".into()], "token hunter2 here"), "token *** here");
        assert!(["api_token", "SSH_PRIVATE_KEY", "db_password", "Secret"].iter().all(|k| is_secret_key(k)));
        assert!(!["tokens_url", "name", "password_hint"].iter().any(|k| is_secret_key(k)));
    }
}
