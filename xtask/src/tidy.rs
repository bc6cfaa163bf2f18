//! `cargo xtask tidy` (and the `tidy` stage of `cargo xtask ci`): rules of the codebase that
//! neither the compiler nor clippy checks, each read from the tree as it is.
//!
//! - `bottle-core` depends on no engine SDK and no HTTP stack, directly or through another
//!   crate (read from `cargo metadata`): adapters own the engines.
//! - Library crates do not print to stdout or stderr (`print!`, `println!`, `eprint!`,
//!   `eprintln!` outside tests and binaries): they log with `tracing` and leave the terminal to
//!   their caller. [`PRINT_ALLOWED`] lists the exceptions, each with its reason.
//! - No tracked file holds an absolute path of a developer's machine (home directories);
//!   [`PATH_ALLOWED`] lists the exceptions, each with its reason.
//! - Every `.rs` file under a crate's `src/` opens with module docs (`//!`).

use std::collections::{BTreeSet, VecDeque};
use std::path::Path;
use std::process::Command;

use cargo_metadata::{DependencyKind, MetadataCommand, PackageId};

use crate::util::root;

/// Crates `bottle-core` must not depend on: engine SDKs and HTTP stacks.
const FORBIDDEN_IN_CORE: &[&str] = &[
    "bollard",
    "podman-api",
    "hyper",
    "hyper-util",
    "http",
    "http-body",
    "http-body-util",
    "h2",
    "reqwest",
    "ureq",
    "isahc",
    "curl",
    "tonic",
    "axum",
    "tower",
    "tower-http",
];

/// Library sources that may print, and why.
pub const PRINT_ALLOWED: &[(&str, &str)] = &[
    (
        "crates/bottle-cli/src/progress.rs",
        "the CLI's progress lines and its pause aid belong on the terminal's stderr",
    ),
    (
        "crates/bottle-core/src/conformance/",
        "the conformance kit runs inside test binaries: its skip lines are for the person running them",
    ),
    (
        "crates/bottle-bench/src/",
        "the benchmark reports the progress of a minutes-long run on stderr",
    ),
    (
        "crates/bottle-sidecars/src/",
        "the bundle image's binary: its daemons' output is the container's log",
    ),
];

/// Path prefixes of a developer's machine that no file may hold.
const MACHINE_PATHS: &[&str] = &["/home/", "/Users/", "/root/"];

/// Files that may hold such a path, and why.
pub const PATH_ALLOWED: &[(&str, &str)] =
    &[("xtask/src/tidy.rs", "it names the paths it looks for")];

/// Runs every check and reports every violation at once.
pub fn run(_args: &[String]) -> Result<(), String> {
    let root = root();
    let files = tracked_files(&root)?;
    let mut problems = core_dependencies()?;
    for file in &files {
        let Ok(text) = std::fs::read_to_string(root.join(file)) else {
            continue; // Binary files hold no paths we write.
        };
        problems.extend(machine_paths(file, &text));
        if file.ends_with(".rs") && is_library_source(file) {
            problems.extend(prints(file, &text));
        }
        if file.ends_with(".rs") && in_src(file) {
            problems.extend(module_docs(file, &text));
        }
    }
    if problems.is_empty() {
        println!("tidy: {} files, every rule holds", files.len());
        Ok(())
    } else {
        Err(format!(
            "{} problems:\n  {}",
            problems.len(),
            problems.join("\n  ")
        ))
    }
}

/// The files git tracks, plus new ones it does not ignore, relative to the root.
fn tracked_files(root: &Path) -> Result<Vec<String>, String> {
    let out = Command::new("git")
        .args(["ls-files", "--cached", "--others", "--exclude-standard"])
        .current_dir(root)
        .output()
        .map_err(|e| format!("cannot run git ls-files: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "git ls-files failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let listed = String::from_utf8_lossy(&out.stdout);
    Ok(listed
        .lines()
        .filter(|f| root.join(f).is_file())
        .map(String::from)
        .collect())
}

/// Every forbidden crate `bottle-core` reaches through normal or build dependencies, with
/// every feature on.
fn core_dependencies() -> Result<Vec<String>, String> {
    let metadata = MetadataCommand::new()
        .current_dir(root())
        .features(cargo_metadata::CargoOpt::AllFeatures)
        .exec()
        .map_err(|e| format!("cargo metadata failed: {e}"))?;
    let resolve = metadata
        .resolve
        .as_ref()
        .ok_or("cargo metadata gave no dependency graph")?;
    let core = metadata
        .workspace_packages()
        .into_iter()
        .find(|p| p.name.as_str() == "bottle-core")
        .ok_or("no bottle-core in the workspace")?;
    let name_of = |id: &PackageId| {
        metadata
            .packages
            .iter()
            .find(|p| &p.id == id)
            .map_or_else(|| id.repr.clone(), |p| p.name.to_string())
    };
    let mut seen = BTreeSet::new();
    let mut queue = VecDeque::from([(core.id.clone(), vec!["bottle-core".to_string()])]);
    let mut problems = Vec::new();
    // Each forbidden crate once, by the shortest path that reaches it (the walk is breadth first).
    let mut reported = BTreeSet::new();
    while let Some((id, path)) = queue.pop_front() {
        if !seen.insert(id.clone()) {
            continue;
        }
        let Some(node) = resolve.nodes.iter().find(|n| n.id == id) else {
            continue;
        };
        for dep in &node.deps {
            let runtime = dep
                .dep_kinds
                .iter()
                .any(|k| k.kind != DependencyKind::Development);
            if !runtime {
                continue;
            }
            let name = name_of(&dep.pkg);
            let mut via = path.clone();
            via.push(name.clone());
            if FORBIDDEN_IN_CORE.contains(&name.as_str()) && reported.insert(name.clone()) {
                problems.push(format!(
                    "bottle-core depends on {name} ({}): engine SDKs and HTTP stacks belong in the adapters",
                    via.join(" -> ")
                ));
            }
            queue.push_back((dep.pkg.clone(), via));
        }
    }
    Ok(problems)
}

/// Whether `file` is a source of a library crate: under a crate's `src/`, not a binary's.
fn is_library_source(file: &str) -> bool {
    in_src(file)
        && !file.starts_with("xtask/")
        && !file.ends_with("/src/main.rs")
        && !file.contains("/src/bin/")
}

/// Whether `file` is under a crate's `src/`.
fn in_src(file: &str) -> bool {
    file.starts_with("src/") || file.contains("/src/")
}

fn allowed(file: &str, list: &[(&str, &str)]) -> bool {
    list.iter().any(|(prefix, _)| file.starts_with(prefix))
}

/// Printing macros in `text` outside its test module.
fn prints(file: &str, text: &str) -> Vec<String> {
    if allowed(file, PRINT_ALLOWED) {
        return Vec::new();
    }
    let mut problems = Vec::new();
    for (i, line) in text.lines().enumerate() {
        // A module's tests come last, after this attribute at the start of a line.
        if line.starts_with("#[cfg(test)]") {
            break;
        }
        let code = line.split("//").next().unwrap_or_default();
        for mac in ["print!(", "println!(", "eprint!(", "eprintln!("] {
            let found = code.match_indices(mac).any(|(at, _)| {
                // `eprintln!(` contains `println!(`: only a match that starts a word counts.
                code[..at]
                    .chars()
                    .next_back()
                    .is_none_or(|c| !c.is_alphanumeric() && c != '_')
            });
            if found {
                problems.push(format!(
                    "{file}:{}: a library prints ({}); log with tracing, or let the caller write",
                    i + 1,
                    mac.trim_end_matches('(')
                ));
            }
        }
    }
    problems
}

/// Absolute paths of a developer's machine in `text`.
fn machine_paths(file: &str, text: &str) -> Vec<String> {
    if allowed(file, PATH_ALLOWED) {
        return Vec::new();
    }
    let mut problems = Vec::new();
    for (i, line) in text.lines().enumerate() {
        for path in MACHINE_PATHS {
            let found = line.match_indices(path).any(|(at, _)| {
                // `/srv/home/` or `a/home/` is a relative path's piece, not a machine's root.
                line[..at]
                    .chars()
                    .next_back()
                    .is_none_or(|c| !c.is_alphanumeric() && !"._-/".contains(c))
            });
            if found {
                problems.push(format!(
                    "{file}:{}: holds a path of a developer's machine ({path}...); use a path relative to the workspace",
                    i + 1
                ));
            }
        }
    }
    problems
}

/// A source file that does not open with module docs.
fn module_docs(file: &str, text: &str) -> Option<String> {
    let first = text.lines().map(str::trim).find(|l| !l.is_empty());
    match first {
        Some(line) if line.starts_with("//!") => None,
        _ => Some(format!(
            "{file}: no module docs; open it with `//!` lines saying what the module is for"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_are_found_outside_tests_only() {
        let text = "//! m\nfn a() { println!(\"x\"); }\n// eprintln!(\"in a comment\")\nfn b() { eprintln!(\"y\") }\n#[cfg(test)]\nmod tests { fn c() { println!(\"ok\"); } }\n";
        let found = prints("crates/x/src/lib.rs", text);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].contains(":2:") && found[0].contains("println!"));
        assert!(found[1].contains(":4:") && found[1].contains("eprintln!"));
        assert!(prints("crates/bottle-cli/src/progress.rs", text).is_empty());
        assert!(!is_library_source("crates/bottle-cli/src/main.rs"));
        assert!(!is_library_source("crates/x/tests/a.rs"));
        assert!(is_library_source("crates/bottle-cli/src/output.rs"));
    }

    #[test]
    fn machine_paths_are_found_at_a_root_only() {
        let home = format!("{}dev/x", MACHINE_PATHS[0]);
        assert_eq!(machine_paths("README.md", &format!("see {home}")).len(), 1);
        assert_eq!(
            machine_paths("a.rs", &format!("\"{}{}\"", MACHINE_PATHS[2], "t")).len(),
            1
        );
        assert!(machine_paths("a.rs", "mount /srv/home/data and sub/home/x").is_empty());
        assert!(machine_paths("xtask/src/tidy.rs", &home).is_empty());
    }

    #[test]
    fn module_docs_open_the_file() {
        assert!(module_docs("a.rs", "\n//! What it is.\nfn a() {}").is_none());
        assert!(module_docs("a.rs", "/// Item docs.\nfn a() {}").is_some());
        assert!(module_docs("a.rs", "").is_some());
    }

    #[test]
    fn forbidden_crates_cover_the_sdks_and_http() {
        for name in ["bollard", "podman-api", "hyper", "reqwest"] {
            assert!(FORBIDDEN_IN_CORE.contains(&name));
        }
    }
}
