//! Medians, quartiles and pairwise ratios, and what every part's report shares: a
//! contender's values round by round, their median, a number or a dash, and replacing a
//! report's section of the benchmarks document.

use std::collections::BTreeMap;
use std::path::Path;

/// The spread of a sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    pub n: usize,
    pub median: f64,
    pub p25: f64,
    pub p75: f64,
    pub min: f64,
    pub max: f64,
}

/// The `q`-quantile (0..=1) of sorted values, interpolating linearly between neighbours.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let pos = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// Median, quartiles and range; `None` for an empty sample.
pub fn summary(values: &[f64]) -> Option<Summary> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    Some(Summary {
        n: v.len(),
        median: quantile(&v, 0.5),
        p25: quantile(&v, 0.25),
        p75: quantile(&v, 0.75),
        min: v[0],
        max: v[v.len() - 1],
    })
}

/// Ratios of pairs taken round by round (`a[i] / b[i]`), skipping rounds where either failed.
pub fn pairwise(a: &[Option<f64>], b: &[Option<f64>]) -> Vec<f64> {
    a.iter()
        .zip(b)
        .filter_map(|(x, y)| match (x, y) {
            (Some(x), Some(y)) if *y > 0.0 => Some(x / y),
            _ => None,
        })
        .collect()
}

/// One value per timed round of contender `c` (`None` where the round failed or the value is
/// missing).
pub fn values<C: Ord, S>(
    rounds: &BTreeMap<C, Vec<Option<S>>>,
    c: &C,
    f: impl Fn(&S) -> Option<f64>,
) -> Vec<Option<f64>> {
    rounds
        .get(c)
        .map(|v| v.iter().map(|s| s.as_ref().and_then(&f)).collect())
        .unwrap_or_default()
}

/// Whether contender `c` has at least one round.
pub fn has<C: Ord, S>(rounds: &BTreeMap<C, Vec<Option<S>>>, c: &C) -> bool {
    rounds.get(c).is_some_and(|v| v.iter().any(Option::is_some))
}

/// The values of the rounds that have one.
pub fn some(v: &[Option<f64>]) -> Vec<f64> {
    v.iter().flatten().copied().collect()
}

/// The median of the rounds that have a value.
pub fn median(v: &[Option<f64>]) -> Option<f64> {
    summary(&some(v)).map(|s| s.median)
}

/// A number with `decimals` places, or a dash.
pub fn num(v: Option<f64>, decimals: usize) -> String {
    v.map_or("–".into(), |v| format!("{v:.decimals$}"))
}

/// Replaces the text between the markers `begin` and `end` in `doc` with `text`.
pub fn update_section(doc: &Path, begin: &str, end: &str, text: &str) -> Result<(), String> {
    let old =
        std::fs::read_to_string(doc).map_err(|e| format!("reading {}: {e}", doc.display()))?;
    let (Some(b), Some(e)) = (old.find(begin), old.find(end)) else {
        return Err(format!(
            "{} has no {begin} ... {end} section to replace",
            doc.display()
        ));
    };
    let new = format!("{}{begin}\n{text}{}", &old[..b], &old[e..]);
    std::fs::write(doc, new).map_err(|e| format!("writing {}: {e}", doc.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries() {
        let s = summary(&[4.0, 1.0, 3.0, 2.0, 5.0]).unwrap();
        assert_eq!(
            (s.median, s.p25, s.p75, s.min, s.max),
            (3.0, 2.0, 4.0, 1.0, 5.0)
        );
        let s = summary(&[1.0, 2.0]).unwrap();
        assert_eq!((s.median, s.p25, s.p75), (1.5, 1.25, 1.75));
        assert!(summary(&[]).is_none());
    }

    #[test]
    fn ratios_pair_rounds_and_skip_failures() {
        let a = [Some(2.0), None, Some(3.0)];
        let b = [Some(1.0), Some(1.0), Some(2.0)];
        assert_eq!(pairwise(&a, &b), vec![2.0, 1.5]);
    }
}
