//! Which published stemcells a source tracks: flavor choice (light, regular, light_china), the
//! "wait for the light stemcell" rule, `version_family` and `constraint` filters, and skipping
//! versions we cannot order.

use crate::clients::boshio::{Stemcell, Variant};
use crate::config::stemcell::{Flavor, Source};
use crate::versions::stemcell::{Constraint, Family, StemcellVersion};
use anyhow::{Result, bail};

/// A concrete tarball variant of a version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum VariantKind {
    Regular,
    Light,
    LightChina,
}

impl VariantKind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            VariantKind::Regular => "regular",
            VariantKind::Light => "light",
            VariantKind::LightChina => "light_china",
        }
    }

    pub(crate) fn of(self, stemcell: &Stemcell) -> Option<&Variant> {
        match self {
            VariantKind::Regular => stemcell.regular.as_ref(),
            VariantKind::Light => stemcell.light.as_ref(),
            VariantKind::LightChina => stemcell.light_china.as_ref(),
        }
    }
}

/// The flavor after folding in the peer's `force_regular`.
pub(crate) fn flavor(source: &Source) -> Result<Flavor> {
    match (source.force_regular, source.flavor) {
        (false, f) => Ok(f),
        (true, Flavor::Auto | Flavor::Regular) => Ok(Flavor::Regular),
        (true, other) => bail!(
            "source.force_regular is true but source.flavor is `{}`: set only one of them",
            match other {
                Flavor::Light => "light",
                _ => "light_china",
            }
        ),
    }
}

/// The variant `check` requires every emitted version to have. With `auto`, a line that publishes
/// light stemcells at all is tracked by its light ones: bosh.io adds them later than the regular
/// tarball, and the peer waits for them, so pipelines that switch type see the same versions.
pub(crate) fn tracked_kind(flavor: Flavor, stemcells: &[Stemcell]) -> VariantKind {
    match flavor {
        Flavor::Regular => VariantKind::Regular,
        Flavor::Light => VariantKind::Light,
        Flavor::LightChina => VariantKind::LightChina,
        Flavor::Auto if stemcells.iter().any(|s| s.light.is_some()) => VariantKind::Light,
        Flavor::Auto => VariantKind::Regular,
    }
}

/// The versions that pass every filter, plus what was left out and why (for the log).
#[derive(Debug, Default)]
pub(crate) struct Selection {
    pub versions: Vec<StemcellVersion>,
    /// Versions with a regular tarball whose light one is not published yet (auto flavor only).
    pub held_back: Vec<StemcellVersion>,
    /// Version strings that are not numeric dotted versions.
    pub unparsable: Vec<String>,
}

/// Filters `stemcells` by flavor, family and constraint.
pub(crate) fn select(
    stemcells: &[Stemcell],
    flavor: Flavor,
    family: &Family,
    constraint: Option<&Constraint>,
) -> Selection {
    let kind = tracked_kind(flavor, stemcells);
    let mut selection = Selection::default();
    for stemcell in stemcells {
        let Some(version) = StemcellVersion::parse(&stemcell.version) else {
            selection.unparsable.push(stemcell.version.clone());
            continue;
        };
        if !family.matches(&version) || !constraint.is_none_or(|c| c.matches(&version)) {
            continue;
        }
        if kind.of(stemcell).is_some() {
            selection.versions.push(version);
        } else if flavor == Flavor::Auto && stemcell.regular.is_some() {
            selection.held_back.push(version);
        }
    }
    selection
}

/// The variant `in` fetches for one version. `auto` prefers light and falls back to regular (a
/// version pinned by hand may predate the line's light stemcells); an explicit flavor must exist.
pub(crate) fn pick(stemcell: &Stemcell, flavor: Flavor) -> Result<(VariantKind, &Variant)> {
    let wanted: &[VariantKind] = match flavor {
        Flavor::Auto => &[VariantKind::Light, VariantKind::Regular],
        Flavor::Light => &[VariantKind::Light],
        Flavor::Regular => &[VariantKind::Regular],
        Flavor::LightChina => &[VariantKind::LightChina],
    };
    if let Some(found) = wanted.iter().find_map(|k| k.of(stemcell).map(|v| (*k, v))) {
        return Ok(found);
    }
    let available: Vec<&str> = [VariantKind::Regular, VariantKind::Light, VariantKind::LightChina]
        .into_iter()
        .filter(|k| k.of(stemcell).is_some())
        .map(VariantKind::name)
        .collect();
    bail!(
        "stemcell {} version {} has no {} tarball (published: {})",
        stemcell.name,
        stemcell.version,
        wanted.iter().map(|k| k.name()).collect::<Vec<_>>().join(" or "),
        if available.is_empty() { "none".to_string() } else { available.join(", ") }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn variant() -> Option<Variant> {
        Some(Variant { url: "https://x/s.tgz".into(), size: 1, ..Default::default() })
    }

    fn sc(version: &str, regular: bool, light: bool) -> Stemcell {
        Stemcell {
            name: "n".into(),
            version: version.into(),
            regular: regular.then(variant).flatten(),
            light: light.then(variant).flatten(),
            light_china: None,
        }
    }

    fn raws(list: &[StemcellVersion]) -> Vec<&str> {
        list.iter().map(|v| v.raw.as_str()).collect()
    }

    #[test]
    fn auto_holds_back_versions_without_light() {
        let list = [sc("1.951", true, false), sc("1.947", true, true), sc("1.943", true, true)];
        let s = select(&list, Flavor::Auto, &Family::parse("latest").unwrap(), None);
        assert_eq!(raws(&s.versions), ["1.947", "1.943"]);
        assert_eq!(raws(&s.held_back), ["1.951"]);
        let regular = select(&list, Flavor::Regular, &Family::parse("latest").unwrap(), None);
        assert_eq!(raws(&regular.versions), ["1.951", "1.947", "1.943"]);
        assert!(regular.held_back.is_empty());
    }

    #[test]
    fn auto_on_a_regular_only_line_tracks_regular() {
        let list = [sc("621.2", true, false), sc("621.1", true, false)];
        let s = select(&list, Flavor::Auto, &Family::parse("latest").unwrap(), None);
        assert_eq!(raws(&s.versions), ["621.2", "621.1"]);
    }

    #[test]
    fn filters_and_odd_versions() {
        let list = [sc("621.9", true, false), sc("1.2", true, false), sc("nightly-3", true, false)];
        let c = Constraint::parse("<600").unwrap();
        let s = select(&list, Flavor::Regular, &Family::parse("latest").unwrap(), Some(&c));
        assert_eq!(raws(&s.versions), ["1.2"]);
        assert_eq!(s.unparsable, ["nightly-3"]);
        let s = select(&list, Flavor::Regular, &Family::parse("621.latest").unwrap(), None);
        assert_eq!(raws(&s.versions), ["621.9"]);
    }

    #[test]
    fn pick_prefers_light_and_names_what_exists() {
        assert_eq!(pick(&sc("1", true, true), Flavor::Auto).unwrap().0, VariantKind::Light);
        assert_eq!(pick(&sc("1", true, false), Flavor::Auto).unwrap().0, VariantKind::Regular);
        let err = pick(&sc("1", false, true), Flavor::Regular).unwrap_err().to_string();
        assert!(err.contains("no regular tarball (published: light)"), "{err}");
    }

    #[test]
    fn force_regular_folds_into_flavor() {
        let mut source: Source =
            serde_json::from_value(serde_json::json!({"kind": "stemcell", "name": "n", "force_regular": true}))
                .unwrap();
        assert_eq!(flavor(&source).unwrap(), Flavor::Regular);
        source.flavor = Flavor::Light;
        assert!(flavor(&source).unwrap_err().to_string().contains("set only one"));
    }
}
