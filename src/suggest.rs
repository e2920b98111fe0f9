//! "Did you mean" hints for every place that rejects a name: unknown fields and enum values in
//! `source`/`params`, kinds, days and time zones of maintenance windows, waves of fleet files.
//!
//! A bottom-layer module so that both the config parser and the domain types it holds (such as
//! `window::Window`) can use it without importing each other. Distance is `strsim`'s optimal string
//! alignment: Levenshtein that also counts a swap of two neighbours as one edit, the most common typo
//! in field names (`verison`).

/// ", did you mean `x`?" when a candidate is close enough to be a plausible typo, else "". On a tie
/// the first candidate wins, so the hint follows the order the caller lists them in.
pub fn suggestion<'a>(bad: &str, candidates: impl Iterator<Item = &'a str>) -> String {
    candidates
        .map(|c| (strsim::osa_distance(bad, c), c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| format!(", did you mean `{c}`?"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::suggestion;

    #[test]
    fn typos_swaps_and_strangers() {
        let fields = ["name", "version_family", "force_regular"];
        assert_eq!(suggestion("nmae", fields.into_iter()), ", did you mean `name`?");
        assert_eq!(suggestion("verison_family", fields.into_iter()), ", did you mean `version_family`?");
        assert_eq!(suggestion("zzzzzz", fields.into_iter()), "");
        // A swap is one edit: `ab` → `ba` is within reach of a two-letter name.
        assert_eq!(suggestion("Sta", ["Sat", "Sun"].into_iter()), ", did you mean `Sat`?");
    }
}
