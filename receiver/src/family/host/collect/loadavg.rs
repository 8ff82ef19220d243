//! /proc/loadavg: load averages over 1, 5 and 15 minutes.

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LoadAvg {
    pub one: f64,
    pub five: f64,
    pub fifteen: f64,
}

/// `0.52 0.58 0.59 2/345 6789`: only the three averages are used.
pub fn parse(text: &str) -> Option<LoadAvg> {
    let mut it = text.split_ascii_whitespace();
    let mut next = || it.next()?.parse::<f64>().ok().filter(|v| v.is_finite());
    Some(LoadAvg {
        one: next()?,
        five: next()?,
        fifteen: next()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_averages() {
        assert_eq!(
            parse("0.52 0.58 1.59 2/345 6789\n"),
            Some(LoadAvg {
                one: 0.52,
                five: 0.58,
                fifteen: 1.59
            })
        );
        assert_eq!(parse("0.00 0.01"), None, "truncated");
        assert_eq!(parse("nan 1 2 1/1 1"), None);
        assert_eq!(parse(""), None);
    }
}
