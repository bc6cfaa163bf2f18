//! The command lines of the bench targets: `--flag value` pairs, numbers and lists, one way for
//! every part.

use std::str::FromStr;

/// This process's arguments without the program and without `--bench` (which `cargo bench`
/// passes to every `harness = false` target).
pub fn from_env() -> Vec<String> {
    std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect()
}

/// The current-thread async runtime a bench target runs on; the error names `what` could not
/// start.
pub fn runtime(what: &str) -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("{what}: cannot start the async runtime: {e}"))
}

/// The `(flag, value)` pairs of `args`. `--bench` (which `cargo bench` passes to every
/// `harness = false` target) is skipped; `-h`/`--help` and a flag without a value are errors
/// that carry `usage`.
pub fn pairs<'a>(args: &'a [String], usage: &str) -> Result<Vec<(&'a str, &'a str)>, String> {
    let mut out = Vec::new();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        if flag == "--bench" {
            continue;
        }
        if flag == "-h" || flag == "--help" {
            return Err(usage.to_string());
        }
        let v = it
            .next()
            .ok_or_else(|| format!("{flag} needs a value\n\n{usage}"))?;
        out.push((flag.as_str(), v.as_str()));
    }
    Ok(out)
}

/// A number given to `flag`.
pub fn number<T: FromStr>(v: &str, flag: &str) -> Result<T, String> {
    v.parse()
        .map_err(|_| format!("{flag} takes a number, not {v:?}"))
}

/// A comma-separated list given to `flag`, each item read by `parse`.
pub fn list<T>(v: &str, parse: impl Fn(&str) -> Option<T>, flag: &str) -> Result<Vec<T>, String> {
    v.split(',')
        .map(|s| parse(s.trim()).ok_or_else(|| format!("{flag}: unknown {s:?}")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_numbers_and_lists() {
        let args: Vec<String> = ["--bench", "--rounds", "3", "--x", "a,b"]
            .map(String::from)
            .to_vec();
        assert_eq!(
            pairs(&args, "u").unwrap(),
            [("--rounds", "3"), ("--x", "a,b")]
        );
        assert_eq!(pairs(&["--help".into()], "usage").unwrap_err(), "usage");
        assert!(pairs(&["--rounds".into()], "u")
            .unwrap_err()
            .contains("needs a value"));
        assert_eq!(number::<u64>("7", "--n"), Ok(7));
        assert!(number::<u64>("x", "--n")
            .unwrap_err()
            .contains("takes a number"));
        assert_eq!(list("a, b", |s| Some(s.len()), "--l"), Ok(vec![1, 1]));
        assert!(list("a", |_| None::<u8>, "--l")
            .unwrap_err()
            .contains("unknown"));
    }
}
