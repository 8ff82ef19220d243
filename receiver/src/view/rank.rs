//! Ranking and filtering of table rows: the top N by a column, and rows whose process
//! name contains what the person typed.

use std::cmp::Ordering;

/// Whether `name` contains `filter`, ignoring ASCII case; an empty filter matches all.
pub fn matches(name: &str, filter: &str) -> bool {
    filter.is_empty()
        || name
            .to_ascii_lowercase()
            .contains(&filter.to_ascii_lowercase())
}

/// Sorts rows by `key`, largest first (a row without a value last), ties by `name`, and
/// keeps the first `n`.
pub fn top_n<T>(
    rows: &mut Vec<T>,
    n: usize,
    key: impl Fn(&T) -> Option<f64>,
    name: impl Fn(&T) -> &str,
) {
    rows.sort_by(|a, b| {
        match (key(a), key(b)) {
            (Some(x), Some(y)) => y.total_cmp(&x),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        }
        .then_with(|| name(a).cmp(name(b)))
    });
    rows.truncate(n);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_by_name() {
        let cases = [
            ("nginx", "", true),
            ("nginx", "ngi", true),
            ("nginx", "NGI", true),
            ("Xorg", "xorg", true),
            ("nginx", "apache", false),
            ("", "a", false),
        ];
        for (name, filter, want) in cases {
            assert_eq!(matches(name, filter), want, "{name:?} ~ {filter:?}");
        }
    }

    #[test]
    fn ranks_largest_first_unknown_last_ties_by_name() {
        let mut rows = vec![
            ("b", Some(1.0)),
            ("a", None),
            ("c", Some(5.0)),
            ("d", Some(1.0)),
            ("e", Some(0.5)),
        ];
        top_n(&mut rows, 4, |r| r.1, |r| r.0);
        let names: Vec<&str> = rows.iter().map(|r| r.0).collect();
        assert_eq!(names, ["c", "b", "d", "e"]);
        top_n(&mut rows, 10, |r| r.1, |r| r.0);
        assert_eq!(rows.len(), 4, "n larger than the rows keeps them all");
    }
}
