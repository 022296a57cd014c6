//! Counts as people read them: `1 identity`, `2 identities`, `0 identities`. Every message that
//! gives a number of something says it through [`count`], so that the noun agrees with it.

/// `n` followed by `one` when `n` is exactly 1, by `many` otherwise.
pub(crate) fn count(n: impl std::fmt::Display, one: &str, many: &str) -> String {
    let n = n.to_string();
    format!("{n} {}", noun(&n, one, many))
}

/// The noun alone, for a number shown apart from it (an HTML page puts the number in an
/// element of its own): `one` when `n` is exactly 1, `many` otherwise.
pub(crate) fn noun<'a>(n: impl std::fmt::Display, one: &'a str, many: &'a str) -> &'a str {
    if n.to_string() == "1" { one } else { many }
}

#[cfg(test)]
mod tests {
    use super::count;

    #[test]
    fn the_noun_agrees_with_the_number() {
        let cases = [
            (0, "0 identities"),
            (1, "1 identity"),
            (2, "2 identities"),
            (11, "11 identities"),
            (-1, "-1 identities"),
        ];
        for (n, want) in cases {
            assert_eq!(count(n, "identity", "identities"), want, "{n}");
        }
        assert_eq!(count(1usize, "day", "days"), "1 day");
        assert_eq!(count(1u32, "hour", "hours"), "1 hour");
    }
}
