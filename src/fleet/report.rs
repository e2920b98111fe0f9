//! Human-readable tables: the fleet (`fleet.md`, with VM ages and certificate expiry when read), the
//! plan of every operation, and the end-of-rollout summary. Markdown with padded columns, so the same
//! text reads well in a build log and in a notification.

use super::Observed;
use super::day2::{age, certs_expiring, days, expires_within, expiry_text, soonest};
use crate::rollout::executor::{Outcome, Report};
use crate::rollout::human;
use crate::rollout::plan::{Action, Change, Plan, PlanKind, Planned};
use jiff::Timestamp;
use serde_json::{Value, json};
use std::time::Duration;

/// Printed with any plan that repaves: what a recreate from the stored manifest does not change.
pub(super) const REPAVE_KEEPS: &str =
    "A repave recreates VMs from the deployment's stored manifest: it never changes the stemcell or the releases.";

/// A Markdown table with columns padded to their widest cell.
pub(super) fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
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

/// `fleet.md`: one row per cluster; "behind" is relative to `target`. With a director, the oldest VM's
/// age and the soonest certificate expiry too, flagged `⚠` when it is within `warn_within`.
pub(super) fn fleet_markdown(fleet: &[Observed], target: &str, warn_within: Duration, now: Timestamp) -> String {
    let day2 = fleet.iter().any(|o| o.facts.vms.is_some() || o.facts.certificates.is_some());
    let rows: Vec<Vec<String>> = fleet
        .iter()
        .map(|o| {
            let c = &o.cluster;
            let mut row = vec![
                c.name.clone(),
                c.plan_name.clone(),
                c.pks_version.clone(),
                c.k8s_version.clone(),
                o.stemcell.clone().unwrap_or_else(|| "—".into()),
                format!("{} {}", c.last_action, c.last_action_state).trim().to_string(),
                if c.pks_version == target { "no".into() } else { "yes".into() },
            ];
            if day2 {
                row.push(vm_age(o, now));
                row.push(certificate_cell(o, warn_within, now));
            }
            row
        })
        .collect();
    let mut headers = vec!["cluster", "plan", "TKGI version", "k8s version", "stemcell", "state", "behind?"];
    let behind = fleet.iter().filter(|o| o.cluster.pks_version != target).count();
    let mut summary = format!("{} clusters, {behind} behind TKGI {target}.", fleet.len());
    if day2 {
        headers.extend(["oldest VM", "soonest certificate expiry"]);
        let warned = fleet.iter().filter(|o| certs_expiring(o, warn_within, now)).count();
        summary.push_str(&format!(" {warned} with a certificate expiring within {} (⚠).", days(warn_within)));
    }
    format!("# TKGI fleet\n\n{summary}\n\n{}", table(&headers, &rows))
}

fn vm_age(o: &Observed, now: Timestamp) -> String {
    match o.facts.vms.as_ref().and_then(|v| v.oldest) {
        Some(t) => format!("{} old", days(age(t, now))),
        None => "—".into(),
    }
}

fn certificate_cell(o: &Observed, within: Duration, now: Timestamp) -> String {
    let Some(c) = o.facts.certificates.as_deref().and_then(soonest) else { return "—".into() };
    let name = c.name.rsplit('/').next().unwrap_or(&c.name);
    let flag = if expires_within(c, within, now) { "⚠ " } else { "" };
    format!("{flag}{name} {}", expiry_text(c))
}

/// The plan as printed before anything changes: one row per job in execution order, with its wave.
pub(super) fn plan_text(plan: &Plan) -> String {
    let mut rows = Vec::new();
    for wave in &plan.waves {
        for p in wave.all() {
            rows.push(vec![
                (rows.len() + 1).to_string(),
                p.name.clone(),
                step(p),
                versions(p, &plan.target),
                wave.name.clone(),
            ]);
        }
    }
    let mut out = match (plan.kind, &plan.target_stemcell) {
        (PlanKind::Repave, _) => "Repave plan (every VM recreated through the BOSH director):\n".to_string(),
        (PlanKind::Rotate, _) => "Certificate rotation plan (through TKGI's configured rotate route):\n".to_string(),
        (PlanKind::Rollout, Some(stemcell)) => format!("Rollout plan to TKGI {}, stemcell {stemcell}:\n", plan.target),
        (PlanKind::Rollout, None) => format!("Rollout plan to TKGI {}:\n", plan.target),
    };
    if rows.is_empty() {
        out.push_str(match plan.kind {
            PlanKind::Rollout => "nothing to upgrade.\n",
            PlanKind::Repave => "nothing to repave.\n",
            PlanKind::Rotate => "nothing to rotate.\n",
        });
    } else {
        out.push_str(&table(&["#", "cluster", "step", "version", "wave"], &rows));
    }
    if plan.planned().any(|p| p.changes.iter().any(|c| matches!(c, Change::Repave { .. }))) {
        out.push_str(REPAVE_KEEPS);
        out.push('\n');
    }
    if !plan.skipped.is_empty() {
        let skipped: Vec<Vec<String>> = plan.skipped.iter().map(|(n, r)| vec![n.clone(), r.to_string()]).collect();
        out.push_str(&format!("Skipped:\n{}", table(&["cluster", "reason"], &skipped)));
    }
    out
}

fn step(p: &Planned) -> String {
    match (p.action, p.canary) {
        (Action::Adopt, _) => format!("adopt (already running): {}", p.describe()),
        (Action::Start, true) => format!("canary {}", p.describe()),
        (Action::Start, false) => p.describe(),
    }
}

/// `1.18 → 1.19`, `stemcell 1.445 → 1.506` (TKGI unchanged), or both joined with `; `.
fn versions(p: &Planned, target: &str) -> String {
    let tkgi = if p.upgrades() && p.from_version != target {
        format!("{} → {target}", p.from_version)
    } else {
        p.from_version.clone()
    };
    match &p.stemcell {
        Some((from, to)) if p.from_version == target => format!("stemcell {from} → {to}"),
        Some((from, to)) => format!("{tkgi}; stemcell {from} → {to}"),
        None => tkgi,
    }
}

/// The plan as data (`plan.json` of a dry run), for a step that comments on a pull request.
pub(super) fn plan_json(plan: &Plan) -> Value {
    let change = |c: &Change| match c {
        Change::Upgrade => json!({"change": "upgrade"}),
        Change::Create { plan, master_host, workers } => {
            json!({"change": "create", "plan": plan, "master_host": master_host, "workers": workers})
        }
        Change::Resize { from, to } => json!({"change": "resize", "from_workers": from, "to_workers": to}),
        Change::Delete => json!({"change": "delete"}),
        Change::Repave { created_before } => json!({"change": "repave", "recreate_vms_created_before": created_before,
                                                    "keeps_stemcell_and_releases": true}),
        Change::Rotate => json!({"change": "rotate_certificates"}),
    };
    let waves: Vec<Value> = plan
        .waves
        .iter()
        .map(|w| {
            let jobs: Vec<Value> = w
                .all()
                .map(|p| {
                    let mut job = json!({"cluster": p.name, "canary": p.canary, "adopt": p.action == Action::Adopt,
                           "from_version": p.from_version, "changes": p.changes.iter().map(change).collect::<Vec<_>>()});
                    // Only with a stemcell target, so plans without one keep their shape.
                    if let Some((from, to)) = &p.stemcell {
                        job["stemcell"] = json!({"from": from, "to": to});
                    }
                    job
                })
                .collect();
            json!({"name": w.name, "jobs": jobs})
        })
        .collect();
    let skipped: Vec<Value> =
        plan.skipped.iter().map(|(n, r)| json!({"cluster": n, "reason": r.to_string()})).collect();
    let mut out =
        json!({"operation": plan.kind.operation(), "target": plan.target, "waves": waves, "skipped": skipped});
    if let Some(stemcell) = &plan.target_stemcell {
        out["target_stemcell"] = json!(stemcell);
    }
    out
}

/// The end-of-rollout summary.
pub(super) fn summary_text(report: &Report) -> String {
    let rows: Vec<Vec<String>> = report
        .clusters
        .iter()
        .map(|c| {
            let role = if c.adopted {
                format!("adopted {}", c.what)
            } else if c.canary {
                format!("canary {}", c.what)
            } else {
                c.what.clone()
            };
            let (result, note) = match &c.outcome {
                Outcome::Succeeded => ("succeeded", String::new()),
                Outcome::Failed(why) => ("FAILED", why.clone()),
                Outcome::NotStarted(why) => ("not started", why.clone()),
            };
            vec![c.name.clone(), role, result.into(), human(c.elapsed), note]
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
    use crate::rollout::plan::{Canaries, ClusterState, plan};
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
            workers: None,
            stemcell: None,
        };
        let clusters = [
            cs("a", "1", "CREATE", "succeeded"),
            cs("b", "1", "UPDATE", "in progress"),
            cs("c", "2", "UPGRADE", "succeeded"),
        ];
        let text = plan_text(&plan(&clusters, "2", None, false, &Canaries::Count(1)).unwrap());
        assert!(text.contains("| 1   | a       | canary upgrade | 1 → 2   | all  |"), "{text}");
        assert!(text.contains("held by another action in progress (UPDATE)"), "{text}");
        assert!(text.contains("already at the target version"), "{text}");
        let with_stemcell = [
            ClusterState { stemcell: Some("1.445".into()), ..cs("a", "2", "UPGRADE", "succeeded") },
            ClusterState { stemcell: Some("1.445".into()), ..cs("b", "1", "UPGRADE", "succeeded") },
        ];
        let text = plan_text(&plan(&with_stemcell, "2", Some("1.506"), false, &Canaries::Count(0)).unwrap());
        assert!(text.starts_with("Rollout plan to TKGI 2, stemcell 1.506:"), "{text}");
        assert!(text.contains("| a       | upgrade | stemcell 1.445 → 1.506 "), "{text}");
        assert!(text.contains("| b       | upgrade | 1 → 2; stemcell 1.445 → 1.506 "), "{text}");
        let json = plan_json(&plan(&with_stemcell, "2", Some("1.506"), false, &Canaries::Count(0)).unwrap());
        assert_eq!(
            (&json["target_stemcell"], &json["waves"][0]["jobs"][0]["stemcell"]["from"]),
            (&json!("1.506"), &json!("1.445"))
        );
        let report = Report {
            clusters: vec![ClusterReport {
                name: "a".into(),
                what: "upgrade".into(),
                canary: true,
                adopted: false,
                outcome: Outcome::Failed("upgrade failed".into()),
                elapsed: Duration::from_secs(90),
            }],
            halted: None,
        };
        let text = summary_text(&report);
        assert!(
            text.contains("0 succeeded, 1 failed") && text.contains("| a       | canary upgrade | FAILED | 1m30s"),
            "{text}"
        );
    }
}
