//! Which refs a push may update: the upstream's `push` patterns, or the default rule (any
//! branch except the upstream's default branch, never a tag).
//!
//! A pattern is a full ref name in which `*` stands for any run of characters, `/` included,
//! as in a git refspec: `refs/heads/agent/*` allows `refs/heads/agent/fix` and
//! `refs/heads/agent/a/b`.

/// The all-zero object id git uses for "no object" (a created or deleted ref's side).
pub fn is_zero_id(id: &str) -> bool {
    !id.is_empty() && id.bytes().all(|b| b == b'0')
}

/// Whether `refname` matches `pattern` (`*` is any run of characters, `/` included).
pub fn matches(pattern: &str, refname: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = refname.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        // No `*`: the whole name.
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// Why `refname` may not be updated, or `Ok` when it may.
///
/// `push` is the upstream's list (`None`: the default rule; empty: no push at all);
/// `default_branch` the upstream's `HEAD` (`None` when the upstream did not say, as an empty
/// one may not: then `main` and `master` are both held to be it).
pub fn ref_allowed(
    push: Option<&[String]>,
    default_branch: Option<&str>,
    refname: &str,
) -> Result<(), String> {
    match push {
        Some([]) => Err("this upstream takes no push (its push list is empty)".into()),
        Some(patterns) => {
            if patterns.iter().any(|p| matches(p, refname)) {
                Ok(())
            } else {
                Err(format!(
                    "ref outside the upstream's push list ({}); push to a ref it allows",
                    patterns.join(", ")
                ))
            }
        }
        None => {
            let Some(branch) = refname.strip_prefix("refs/heads/") else {
                return Err(if refname.starts_with("refs/tags/") {
                    "tags are not pushed under the default rule (any branch except the \
                     default branch); declare push = [\"refs/tags/...\"] to allow them"
                        .into()
                } else {
                    "only branches (refs/heads/...) are pushed under the default rule".into()
                });
            };
            let is_default = match default_branch {
                Some(d) => d == refname,
                None => branch == "main" || branch == "master",
            };
            if is_default {
                Err(
                    "the upstream's default branch is not pushed under the default rule; push \
                     to another branch (git push origin HEAD:refs/heads/agent/<topic>)"
                        .into(),
                )
            } else {
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        for (p, r, m) in [
            ("refs/heads/agent/*", "refs/heads/agent/fix", true),
            ("refs/heads/agent/*", "refs/heads/agent/a/b", true),
            ("refs/heads/agent/*", "refs/heads/agent/", true),
            ("refs/heads/agent/*", "refs/heads/agentx", false),
            ("refs/heads/agent/*", "refs/heads/main", false),
            ("refs/heads/main", "refs/heads/main", true),
            ("refs/heads/main", "refs/heads/main2", false),
            ("refs/heads/main", "refs/heads/mai", false),
            ("refs/tags/v*", "refs/tags/v1.0", true),
            ("refs/heads/*/wip", "refs/heads/x/wip", true),
            ("refs/heads/*/wip", "refs/heads/x/wip2", false),
            ("refs/heads/a*b*c", "refs/heads/abc", true),
            ("refs/heads/a*b*c", "refs/heads/abbc", true),
            ("refs/heads/a*b*c", "refs/heads/acb", false),
            ("refs/heads/*ab", "refs/heads/ab", true),
            ("refs/heads/ab*ab", "refs/heads/ab", false),
        ] {
            assert_eq!(matches(p, r), m, "{p} ~ {r}");
        }
    }

    #[test]
    fn default_rule() {
        let main = Some("refs/heads/main");
        assert!(ref_allowed(None, main, "refs/heads/agent/x").is_ok());
        assert!(ref_allowed(None, main, "refs/heads/master").is_ok());
        let e = ref_allowed(None, main, "refs/heads/main").unwrap_err();
        assert!(e.contains("default branch"), "{e}");
        let e = ref_allowed(None, main, "refs/tags/v1").unwrap_err();
        assert!(e.contains("tags"), "{e}");
        assert!(ref_allowed(None, main, "refs/notes/x").is_err());
        assert!(ref_allowed(None, None, "refs/heads/master").is_err());
        assert!(ref_allowed(None, None, "refs/heads/main").is_err());
        assert!(ref_allowed(None, None, "refs/heads/dev").is_ok());
    }

    #[test]
    fn listed_patterns() {
        let push = vec!["refs/heads/agent/*".to_string(), "refs/tags/v*".to_string()];
        let main = Some("refs/heads/main");
        assert!(ref_allowed(Some(&push), main, "refs/heads/agent/x").is_ok());
        assert!(ref_allowed(Some(&push), main, "refs/tags/v2").is_ok());
        let e = ref_allowed(Some(&push), main, "refs/heads/dev").unwrap_err();
        assert!(e.contains("refs/heads/agent/*, refs/tags/v*"), "{e}");
        assert!(ref_allowed(Some(&[]), main, "refs/heads/agent/x").is_err());
    }

    #[test]
    fn zero_ids() {
        assert!(is_zero_id("0000000000000000000000000000000000000000"));
        assert!(!is_zero_id("0000000000000000000000000000000000000001"));
        assert!(!is_zero_id(""));
    }
}
