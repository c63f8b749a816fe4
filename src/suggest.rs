//! "Did you mean" hints: the known name closest to a misspelt one. Used by the
//! configuration, route and policy errors alike.

/// The candidate closest to `word` when it is close enough to be a misspelling
/// (at most a third of its letters, and at least one, differ).
pub(crate) fn did_you_mean<'c>(
    word: &str,
    candidates: impl IntoIterator<Item = &'c str>,
) -> Option<&'c str> {
    let limit = (word.chars().count() / 3).max(1);
    candidates
        .into_iter()
        .filter(|c| *c != word)
        .map(|c| {
            (
                edit_distance(&word.to_ascii_lowercase(), &c.to_ascii_lowercase()),
                c,
            )
        })
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Levenshtein distance, with a transposition counted as one edit. Bounded: keys are
/// short, and a longer word is not compared.
fn edit_distance(a: &str, b: &str) -> usize {
    const MAX: usize = 64;
    let a: Vec<char> = a.chars().take(MAX).collect();
    let b: Vec<char> = b.chars().take(MAX).collect();
    let mut rows = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in rows.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in rows[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut d = (rows[i - 1][j] + 1)
                .min(rows[i][j - 1] + 1)
                .min(rows[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d = d.min(rows[i - 2][j - 2] + 1);
            }
            rows[i][j] = d;
        }
    }
    rows[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn misspellings_find_their_key() {
        let keys = ["path", "prefix", "methods", "condition", "resource"];
        assert_eq!(did_you_mean("method", keys), Some("methods"));
        assert_eq!(did_you_mean("condtion", keys), Some("condition"));
        assert_eq!(did_you_mean("resuorce", keys), Some("resource"));
        assert_eq!(did_you_mean("colour", keys), None);
        assert_eq!(did_you_mean("path", keys), None);
    }
}
