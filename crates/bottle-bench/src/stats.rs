//! Medians, quartiles and pairwise ratios.

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
