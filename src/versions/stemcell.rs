//! Stemcell version numbers and the filters `kind: stemcell`'s `check` applies to them: numeric
//! dotted parsing, `version_family`, `constraint` ranges, ordering and the check window.
//!
//! Stemcell versions are not semver (`621.125`, `3586.100`, `1.506`; `1.10` is newer than `1.9`), so
//! they are compared part by part as numbers, missing parts counting as 0. Anything else (a suffix,
//! an empty part) is not a version we can order: callers skip it with a warning instead of panicking
//! as the peer does.

use super::compare_parts as cmp_parts;
use anyhow::{Result, anyhow, bail};
use serde::Deserialize;
use std::cmp::Ordering;

/// A parsed stemcell version; `raw` is kept because Concourse versions are the exact published strings.
#[derive(Clone, Debug, Eq)]
pub struct StemcellVersion {
    pub raw: String,
    parts: Vec<u64>,
}

impl StemcellVersion {
    /// `None` unless `raw` is one or more dot-separated decimal numbers.
    pub fn parse(raw: &str) -> Option<Self> {
        let parts = parse_parts(raw)?;
        Some(StemcellVersion { raw: raw.to_string(), parts })
    }

    /// The numeric part `i`, 0 when the version is shorter.
    fn part(&self, i: usize) -> u64 {
        self.parts.get(i).copied().unwrap_or(0)
    }

    fn starts_with(&self, prefix: &[u64]) -> bool {
        prefix.iter().enumerate().all(|(i, p)| self.part(i) == *p)
    }
}

fn parse_parts(raw: &str) -> Option<Vec<u64>> {
    raw.split('.')
        .map(|p| if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) { p.parse().ok() } else { None })
        .collect()
}

/// A stemcell version as bosh.io and the director spell them: digits and dots (`1.506`, `621.125`).
pub(crate) fn is_stemcell_version(text: &str) -> bool {
    StemcellVersion::parse(text.trim()).is_some()
}

impl Ord for StemcellVersion {
    /// [`super::compare`]'s order: `1.0` and `1` are the same number, and the string breaks the tie
    /// so sorting is deterministic.
    fn cmp(&self, other: &Self) -> Ordering {
        super::compare(&self.raw, &other.raw)
    }
}

impl PartialOrd for StemcellVersion {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for StemcellVersion {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

/// `version_family`: `latest` (everything), `621.latest` / `621` (that major line), `621.125.latest`
/// (that minor line). Stored as the numeric prefix a version must start with.
///
/// Deserialized from its text (`#[serde(default)]` is `latest`), so a request is parsed once and a bad value
/// is refused with its field's name.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Family(Vec<u64>);

impl TryFrom<String> for Family {
    type Error = anyhow::Error;

    fn try_from(text: String) -> Result<Family> {
        Family::parse(&text)
    }
}

impl Family {
    pub fn parse(text: &str) -> Result<Family> {
        let text = text.trim();
        if text.is_empty() || text == "latest" {
            return Ok(Family(Vec::new()));
        }
        let prefix = text.strip_suffix(".latest").unwrap_or(text);
        parse_parts(prefix).map(Family).ok_or_else(|| {
            anyhow!("`{text}` is not valid: expected `latest`, `N.latest`, `N.M.latest` or `N` (e.g. `621.latest`)")
        })
    }

    pub fn matches(&self, v: &StemcellVersion) -> bool {
        v.starts_with(&self.0)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
}

/// One comparison, e.g. `>=1.500`, or a prefix match for `1.x` / `1.*`.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Clause {
    Compare(Op, Vec<u64>),
    Prefix(Vec<u64>),
}

impl Clause {
    fn matches(&self, v: &StemcellVersion) -> bool {
        match self {
            Clause::Prefix(prefix) => v.starts_with(prefix),
            Clause::Compare(op, bound) => {
                let ord = cmp_parts(&v.parts, bound);
                match op {
                    Op::Eq => ord.is_eq(),
                    Op::Ne => ord.is_ne(),
                    Op::Gt => ord.is_gt(),
                    Op::Ge => ord.is_ge(),
                    Op::Lt => ord.is_lt(),
                    Op::Le => ord.is_le(),
                }
            }
        }
    }
}

/// A semver-style range in the Masterminds syntax pipelines already use (dpb587/bosh-release-resource):
/// clauses joined by `,` or spaces must all hold, `||` separates alternatives. Supported: `=`, `!=`, `>`,
/// `>=`, `<`, `<=`, `~` (`~621.120` = `>=621.120, <621.121`; `~1` = `>=1, <2`), `^` (`^1.500` =
/// `>=1.500, <2`) and wildcards (`621.x`, `621.*`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Constraint {
    alternatives: Vec<Vec<Clause>>,
}

impl TryFrom<String> for Constraint {
    type Error = anyhow::Error;

    fn try_from(text: String) -> Result<Constraint> {
        Constraint::parse(&text)
    }
}

impl Constraint {
    pub fn parse(text: &str) -> Result<Constraint> {
        let bad = |why: String| anyhow!("`{text}` is not valid: {why}");
        let alternatives = text.split("||").map(|group| parse_group(group).map_err(bad)).collect::<Result<Vec<_>>>()?;
        if alternatives.iter().any(Vec::is_empty) {
            bail!("`{text}` is not valid: empty range (expected e.g. `>=1.500, <2`)");
        }
        Ok(Constraint { alternatives })
    }

    pub fn matches(&self, v: &StemcellVersion) -> bool {
        self.alternatives.iter().any(|group| group.iter().all(|c| c.matches(v)))
    }
}

fn parse_group(group: &str) -> std::result::Result<Vec<Clause>, String> {
    let mut clauses = Vec::new();
    let mut rest = group.trim_start_matches([' ', ',']);
    while !rest.is_empty() {
        let op_len = rest.find(|c: char| !"<>=!~^".contains(c)).unwrap_or(rest.len());
        let (op, after) = rest.split_at(op_len);
        let after = after.trim_start();
        let ver_len = after.find(|c: char| c == ',' || c.is_whitespace()).unwrap_or(after.len());
        let (version, tail) = after.split_at(ver_len);
        clauses.extend(parse_clause(op, version)?);
        rest = tail.trim_start_matches([' ', ',', '\t']);
    }
    Ok(clauses)
}

fn parse_clause(op: &str, version: &str) -> std::result::Result<Vec<Clause>, String> {
    let version = version.strip_prefix('v').unwrap_or(version);
    if version.is_empty() {
        return Err(format!("`{op}` is not followed by a version"));
    }
    if let Some(prefix) = wildcard_prefix(version) {
        let prefix = match prefix {
            "" => Vec::new(),
            p => parse_parts(p).ok_or_else(|| format!("`{version}` is not a version"))?,
        };
        return match op {
            "" | "=" => Ok(vec![Clause::Prefix(prefix)]),
            _ => Err(format!("a wildcard version (`{version}`) cannot be combined with `{op}`")),
        };
    }
    let parts = parse_parts(version).ok_or_else(|| format!("`{version}` is not a numeric dotted version"))?;
    let simple = |op| Ok(vec![Clause::Compare(op, parts.clone())]);
    match op {
        "" | "=" | "==" => simple(Op::Eq),
        "!=" => simple(Op::Ne),
        ">" => simple(Op::Gt),
        ">=" | "=>" => simple(Op::Ge),
        "<" => simple(Op::Lt),
        "<=" | "=<" => simple(Op::Le),
        "~" | "~>" => Ok(bounded(&parts, if parts.len() >= 2 { 1 } else { 0 })),
        "^" => Ok(bounded(&parts, parts.iter().position(|p| *p != 0).unwrap_or(parts.len() - 1))),
        other => Err(format!("unknown operator `{other}` (expected one of = != > >= < <= ~ ^)")),
    }
}

/// `>= parts` and `< parts[..=bump]` with the part at `bump` incremented.
fn bounded(parts: &[u64], bump: usize) -> Vec<Clause> {
    let mut upper = parts[..=bump].to_vec();
    upper[bump] = upper[bump].saturating_add(1);
    vec![Clause::Compare(Op::Ge, parts.to_vec()), Clause::Compare(Op::Lt, upper)]
}

/// `621.x` / `621.*.*` → `621`, `*` → ``; `None` when the version has no wildcard.
fn wildcard_prefix(version: &str) -> Option<&str> {
    let is_wild = |p: &str| matches!(p, "*" | "x" | "X");
    if is_wild(version) {
        return Some("");
    }
    let mut prefix = version;
    while let Some((head, _)) = prefix.rsplit_once('.').filter(|(_, last)| is_wild(last)) {
        prefix = head;
    }
    (prefix.len() < version.len()).then_some(prefix)
}

/// What `check` emits from the filtered, parsed versions (any order): oldest first; only the latest
/// without a current version; with one, it and everything newer — or the latest alone when it is no
/// longer listed (Concourse's rule for a vanished version).
pub fn window(mut versions: Vec<StemcellVersion>, current: Option<&str>) -> Vec<StemcellVersion> {
    versions.sort();
    versions.dedup_by(|a, b| a.raw == b.raw);
    let latest_only = |mut v: Vec<StemcellVersion>| v.pop().into_iter().collect();
    match current.and_then(|c| versions.iter().position(|v| v.raw == c)) {
        Some(at) => versions.split_off(at),
        None => latest_only(versions),
    }
}

/// The operating system in a bosh.io stemcell name, as the stemcell's manifest states it and Ops Manager
/// lists it: `bosh-vsphere-esxi-ubuntu-jammy-go_agent` → `ubuntu-jammy`, `…-windows2019-go_agent` →
/// `windows2019`, `…-centos-7-go_agent` → `centos-7` (docs/facts/bosh-io.md). `None` for a name without a
/// known OS family.
pub(crate) fn operating_system(name: &str) -> Option<String> {
    let parts: Vec<&str> = name.trim_end_matches("-go_agent").split('-').collect();
    let at = parts.iter().position(|p| ["ubuntu", "centos", "windows"].iter().any(|f| p.starts_with(f)))?;
    match parts[at] {
        family @ ("ubuntu" | "centos") => parts.get(at + 1).map(|release| format!("{family}-{release}")),
        windows => Some(windows.to_string()),
    }
}

/// `(name, version)` from the file name bosh.io publishes a tarball under,
/// `[light-]bosh-stemcell-VERSION-INFRASTRUCTURE-…-go_agent.tgz` (the name is given back with its `bosh-`).
pub(crate) fn from_file_name(file: &str) -> Option<(String, String)> {
    let rest = file.strip_prefix("light-").unwrap_or(file).strip_prefix("bosh-stemcell-")?.strip_suffix(".tgz")?;
    let (version, name) = rest.split_once('-')?;
    StemcellVersion::parse(version)?;
    let name = if name.starts_with("bosh-") { name.to_string() } else { format!("bosh-{name}") };
    Some((name, version.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(raw: &str) -> StemcellVersion {
        StemcellVersion::parse(raw).unwrap()
    }

    fn raws(list: &[StemcellVersion]) -> Vec<&str> {
        list.iter().map(|v| v.raw.as_str()).collect()
    }

    #[test]
    fn numeric_not_lexical() {
        assert!(v("1.10") > v("1.9"));
        assert!(v("621.125") > v("621.99"));
        assert!(v("3586.100") > v("621.125"));
        assert_eq!(cmp_parts(&[1, 0], &[1]), Ordering::Equal);
        for odd in ["", "1.", ".1", "1..2", "1.2-rc", "v1", "latest", "1.2 ", "-1", "99999999999999999999999"] {
            assert!(StemcellVersion::parse(odd).is_none(), "{odd:?}");
        }
        assert!(is_stemcell_version(" 621.125\n") && !is_stemcell_version("1..2") && !is_stemcell_version(""));
        for (a, b) in [("1.10", "1.9"), ("1.0", "1"), ("621.125", "621.99")] {
            assert_eq!(v(a).cmp(&v(b)), super::super::compare(a, b), "{a} vs {b}");
        }
    }

    #[test]
    fn families() {
        let all = Family::parse("latest").unwrap();
        let major = Family::parse("621.latest").unwrap();
        let minor = Family::parse("621.125.latest").unwrap();
        assert_eq!(Family::parse("621").unwrap(), major);
        assert!(all.matches(&v("1.5")));
        assert!(major.matches(&v("621.5")) && major.matches(&v("621")) && !major.matches(&v("6210.1")));
        assert!(minor.matches(&v("621.125")) && minor.matches(&v("621.125.3")) && !minor.matches(&v("621.126")));
        assert!(Family::parse("621.x").is_err() && Family::parse("jammy").is_err());
    }

    #[test]
    fn constraints() {
        let c = Constraint::parse(">=1.500, <2").unwrap();
        assert!(c.matches(&v("1.500")) && c.matches(&v("1.999")) && !c.matches(&v("1.499")) && !c.matches(&v("2.0")));
        let tilde = Constraint::parse("~621.120").unwrap();
        assert!(tilde.matches(&v("621.120")) && tilde.matches(&v("621.120.7")) && !tilde.matches(&v("621.121")));
        let tilde_major = Constraint::parse("~1").unwrap();
        assert!(tilde_major.matches(&v("1.9")) && !tilde_major.matches(&v("2.0")));
        let caret = Constraint::parse("^1.500").unwrap();
        assert!(caret.matches(&v("1.900")) && !caret.matches(&v("1.499")) && !caret.matches(&v("2.1")));
        let spaced = Constraint::parse(">= 1.2 < 1.10").unwrap();
        assert!(spaced.matches(&v("1.9")) && !spaced.matches(&v("1.10")));
        let or = Constraint::parse("621.x || >=1.500").unwrap();
        assert!(or.matches(&v("621.3")) && or.matches(&v("1.600")) && !or.matches(&v("1.4")));
        let star = Constraint::parse("1.*.x").unwrap();
        assert!(star.matches(&v("1.4")) && !star.matches(&v("2.4")));
        assert!(Constraint::parse("*").unwrap().matches(&v("7")));
        assert!(Constraint::parse("!=1.5").unwrap().matches(&v("1.6")));
        for bad in ["", ">=", "banana", ">=1.x", "=~1.2", ">=1.2 ||", "1.2-rc"] {
            let err = Constraint::parse(bad).unwrap_err().to_string();
            assert!(err.contains("is not valid"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn check_window() {
        let list = || ["1.9", "1.10", "1.2", "1.10"].into_iter().map(v).collect::<Vec<_>>();
        assert_eq!(raws(&window(list(), None)), ["1.10"]);
        assert_eq!(raws(&window(list(), Some("1.9"))), ["1.9", "1.10"]);
        assert_eq!(raws(&window(list(), Some("1.10"))), ["1.10"]);
        assert_eq!(raws(&window(list(), Some("1.3"))), ["1.10"], "a vanished version yields the latest");
        assert!(window(Vec::new(), Some("1")).is_empty());
    }

    #[test]
    fn operating_systems_and_file_names() {
        assert_eq!(operating_system("bosh-vsphere-esxi-ubuntu-jammy-go_agent").as_deref(), Some("ubuntu-jammy"));
        assert_eq!(operating_system("bosh-aws-xen-hvm-windows2019-go_agent").as_deref(), Some("windows2019"));
        assert_eq!(operating_system("bosh-google-kvm-centos-7-go_agent").as_deref(), Some("centos-7"));
        assert_eq!(operating_system("bosh-bench-stemcell"), None);
        let light = from_file_name("light-bosh-stemcell-3263.8-aws-xen-hvm-ubuntu-trusty-go_agent.tgz").unwrap();
        assert_eq!(light, ("bosh-aws-xen-hvm-ubuntu-trusty-go_agent".to_string(), "3263.8".to_string()));
        assert!(from_file_name("stemcell.tgz").is_none());
        assert!(from_file_name("bosh-stemcell-x.y-vsphere.tgz").is_none());
    }
}
