//! "Did you mean" hints for misspelt keys and values.

/// Returns `, did you mean "x"?` for the closest candidate, or an empty string
/// when nothing is close enough to be a plausible typo.
pub fn did_you_mean<'a>(input: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    closest(input, candidates).map_or_else(String::new, |c| format!(", did you mean {c:?}?"))
}

/// The candidate closest to `input` by edit distance (case-insensitive),
/// allowing about one edit per three characters.
pub fn closest<'a>(input: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let input = input.to_ascii_lowercase();
    let limit = (input.chars().count() / 3).max(1);
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(&input, &c.to_ascii_lowercase()), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_typos_only() {
        let keys = ["memory", "cpus", "pids"];
        assert_eq!(closest("memroy", keys), Some("memory"));
        assert_eq!(closest("cpu", keys), Some("cpus"));
        assert_eq!(closest("MEMORY", keys), Some("memory"));
        assert_eq!(closest("network", keys), None);
        assert_eq!(did_you_mean("pid", keys), ", did you mean \"pids\"?");
        assert_eq!(did_you_mean("zzzzzz", keys), "");
    }
}
