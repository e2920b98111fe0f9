//! Human-readable tables: the fleet (`fleet.md`), the rollout plan, and the end-of-rollout summary.
//! Markdown with padded columns, so the same text reads well in a build log and in a notification.

use super::Observed;
use crate::rollout::executor::{Outcome, Report};
use crate::rollout::human;
use crate::rollout::plan::{Action, Plan};

/// A Markdown table with columns padded to their widest cell.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let clean = |s: &str| s.replace('|', "\\|").replace('\n', " ");
    let rows: Vec<Vec<String>> = rows.iter().map(|r| r.iter().map(|c| clean(c)).collect()).collect();
    let widths: Vec<usize> = (0..headers.len())
        .map(|i| rows.iter().map(|r| r[i].chars().count()).chain([headers[i].len(), 3]).max().unwrap_or(3))
        .collect();
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        format!("| {} |\n", padded.join(" | "))
    };
    let mut out = line(headers.iter().map(|h| h.to_string()).collect());
    out.push_str(&line(widths.iter().map(|w| "-".repeat(*w)).collect()));
    for row in rows {
        out.push_str(&line(row));
    }
    out
}

/// `fleet.md`: one row per cluster; "behind" is relative to `target`.
pub fn fleet_markdown(fleet: &[Observed], target: &str) -> String {
    let rows: Vec<Vec<String>> = fleet
        .iter()
        .map(|o| {
            let c = &o.cluster;
            vec![
                c.name.clone(),
                c.plan_name.clone(),
                c.pks_version.clone(),
                c.k8s_version.clone(),
                o.stemcell.clone().unwrap_or_else(|| "—".into()),
                format!("{} {}", c.last_action, c.last_action_state).trim().to_string(),
                if c.pks_version == target { "no".into() } else { "yes".into() },
            ]
        })
        .collect();
    let headers = ["cluster", "plan", "TKGI version", "k8s version", "stemcell", "state", "behind?"];
    let behind = fleet.iter().filter(|o| o.cluster.pks_version != target).count();
    format!("# TKGI fleet\n\n{} clusters, {behind} behind TKGI {target}.\n\n{}", fleet.len(), table(&headers, &rows))
}

/// The plan as printed before anything changes.
pub fn plan_text(plan: &Plan) -> String {
    let mut rows = Vec::new();
    for p in plan.planned() {
        let role = match (p.action, p.canary) {
            (Action::Adopt, _) => "adopt (upgrade already running)",
            (Action::Start, true) => "canary",
            (Action::Start, false) => "upgrade",
        };
        rows.push(vec![
            (rows.len() + 1).to_string(),
            p.name.clone(),
            role.into(),
            format!("{} → {}", p.from_version, plan.target),
        ]);
    }
    let mut out = format!("Rollout plan to TKGI {}:\n", plan.target);
    if rows.is_empty() {
        out.push_str("nothing to upgrade.\n");
    } else {
        out.push_str(&table(&["#", "cluster", "step", "version"], &rows));
    }
    if !plan.skipped.is_empty() {
        let skipped: Vec<Vec<String>> = plan.skipped.iter().map(|(n, r)| vec![n.clone(), r.to_string()]).collect();
        out.push_str(&format!("Skipped:\n{}", table(&["cluster", "reason"], &skipped)));
    }
    out
}

/// The end-of-rollout summary.
pub fn summary_text(report: &Report) -> String {
    let rows: Vec<Vec<String>> = report
        .clusters
        .iter()
        .map(|c| {
            let role = if c.adopted {
                "adopted"
            } else if c.canary {
                "canary"
            } else {
                "upgrade"
            };
            let (result, note) = match &c.outcome {
                Outcome::Succeeded => ("succeeded", String::new()),
                Outcome::Failed(why) => ("FAILED", why.clone()),
                Outcome::NotStarted(why) => ("not started", why.clone()),
            };
            vec![c.name.clone(), role.into(), result.into(), human(c.elapsed), note]
        })
        .collect();
    let count = |pick: fn(&Outcome) -> bool| report.clusters.iter().filter(|c| pick(&c.outcome)).count();
    format!(
        "Rollout summary: {} succeeded, {} failed, {} not started.\n{}",
        count(|o| *o == Outcome::Succeeded),
        count(|o| matches!(o, Outcome::Failed(_))),
        count(|o| matches!(o, Outcome::NotStarted(_))),
        table(&["cluster", "role", "result", "time", "note"], &rows)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollout::executor::ClusterReport;
    use crate::rollout::plan::{CanarySpec, ClusterState, plan};
    use std::time::Duration;

    #[test]
    fn tables_are_aligned_and_escaped() {
        let t = table(&["a", "long header"], &[vec!["x|y".into(), "1".into()]]);
        assert_eq!(t, "| a    | long header |\n| ---- | ----------- |\n| x\\|y | 1           |\n");
    }

    #[test]
    fn plan_and_summary() {
        let cs = |n: &str, v: &str, a: &str, s: &str| ClusterState {
            name: n.into(),
            version: v.into(),
            last_action: a.into(),
            last_action_state: s.into(),
            description: String::new(),
        };
        let clusters = [
            cs("a", "1", "CREATE", "succeeded"),
            cs("b", "1", "UPDATE", "in progress"),
            cs("c", "2", "UPGRADE", "succeeded"),
        ];
        let text = plan_text(&plan(&clusters, "2", false, &CanarySpec::Count(1)).unwrap());
        assert!(text.contains("| 1   | a       | canary | 1 → 2"), "{text}");
        assert!(text.contains("held by another action in progress (UPDATE)"), "{text}");
        assert!(text.contains("already at the target version"), "{text}");
        let report = Report {
            clusters: vec![ClusterReport {
                name: "a".into(),
                canary: true,
                adopted: false,
                outcome: Outcome::Failed("upgrade failed".into()),
                elapsed: Duration::from_secs(90),
            }],
            halted: None,
        };
        let text = summary_text(&report);
        assert!(
            text.contains("0 succeeded, 1 failed") && text.contains("| a       | canary | FAILED | 1m30s"),
            "{text}"
        );
    }
}
