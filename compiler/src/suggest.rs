//! "Did you mean" suggestions by edit distance.

/// The edit (Levenshtein) distance between two strings, counted in characters.
pub fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diag = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let next = (row[j + 1] + 1).min(row[j] + 1).min(diag + usize::from(ca != *cb));
            diag = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

/// The candidate closest to `name`, if it is close enough to be a likely typo: at most a third of
/// the name's length in edits (at least one). Ties go to the first candidate; `name` itself is skipped.
pub fn did_you_mean<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let len = name.chars().count();
    let limit = (len / 3).max(1);
    let mut best: Option<(usize, &'a str)> = None;
    for c in candidates {
        // The distance is at least the difference in length: skip what cannot be close.
        if c == name || c.chars().count().abs_diff(len) > limit {
            continue;
        }
        let d = levenshtein(name, c);
        if d <= limit && best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, c));
        }
    }
    best.map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distance() {
        assert_eq!(levenshtein("kitten", "sitting"), 3);
        assert_eq!(levenshtein("", "abc"), 3);
        assert_eq!(levenshtein("same", "same"), 0);
    }

    #[test]
    fn suggestions() {
        let names = ["transformer_s", "transformer_b", "unet_s"];
        assert_eq!(did_you_mean("transfomer_s", names), Some("transformer_s"));
        assert_eq!(did_you_mean("unet_x", names), Some("unet_s"));
        assert_eq!(did_you_mean("completely_else", names), None);
        assert_eq!(did_you_mean("a", ["b", "ab"]), Some("b"));
    }
}
