//! `cargo xtask guide`: proves the README's adapter guide. Builds a new crate outside the
//! workspace, in a temporary directory, from the guide's own code blocks (its `Cargo.toml`, its
//! `src/lib.rs` and its `tests/conformance.rs`, in that order) and runs its tests: every
//! conformance case and every mutant against the guide's adapter.
//!
//! The only change to the guide's text is the path of the dependency, which points at this
//! workspace's `crates/bottle-core`. The crate starts from this workspace's `Cargo.lock` and
//! builds into its target directory, so nothing is compiled twice and nothing is downloaded.

use std::path::Path;

use crate::util::{cargo, root, run};

/// The README's heading of the guide.
const SECTION: &str = "## Writing an adapter for another engine";
/// The dependency path as the guide writes it (a clone beside the new crate).
const GUIDE_PATH: &str = "../bottle/crates/bottle-core";

pub fn run_guide(_args: &[String]) -> Result<(), String> {
    let readme = std::fs::read_to_string(root().join("README.md"))
        .map_err(|e| format!("cannot read README.md: {e}"))?;
    let blocks = code_blocks(&readme)?;
    let [(_, manifest), (_, lib), (_, tests)] = &blocks[..] else {
        return Err(format!(
            "the guide should have 3 code blocks (toml, rust, rust), found {}",
            blocks.len()
        ));
    };
    let core = root().join("crates").join("bottle-core");
    let manifest = manifest.replace(GUIDE_PATH, &core.to_string_lossy());
    if !manifest.contains(&*core.to_string_lossy()) {
        return Err(format!(
            "the guide's Cargo.toml no longer depends on {GUIDE_PATH}"
        ));
    }
    let dir = std::env::temp_dir().join(format!("bottle-adapter-guide-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let write = |path: &str, text: &str| -> Result<(), String> {
        let path = dir.join(path);
        std::fs::create_dir_all(path.parent().unwrap_or(Path::new(".")))
            .and_then(|()| std::fs::write(&path, text))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))
    };
    // Its own workspace: never a member of one that happens to enclose the temporary directory.
    write("Cargo.toml", &format!("{manifest}\n[workspace]\n"))?;
    write("src/lib.rs", lib)?;
    write("tests/conformance.rs", tests)?;
    std::fs::copy(root().join("Cargo.lock"), dir.join("Cargo.lock"))
        .map_err(|e| format!("cannot copy Cargo.lock: {e}"))?;
    let result = run(cargo()
        .args(["test", "--offline", "--manifest-path"])
        .arg(dir.join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", root().join("target")));
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// The fenced code blocks of the guide's section: (language, text).
fn code_blocks(readme: &str) -> Result<Vec<(String, String)>, String> {
    let start = readme
        .find(SECTION)
        .ok_or_else(|| format!("README.md has no section {SECTION:?}"))?;
    let section = &readme[start + SECTION.len()..];
    let section = section.find("\n## ").map_or(section, |end| &section[..end]);
    let mut blocks = Vec::new();
    let mut lines = section.lines();
    while let Some(line) = lines.next() {
        if let Some(lang) = line.strip_prefix("```") {
            let mut text = String::new();
            for l in lines.by_ref().take_while(|l| !l.starts_with("```")) {
                text.push_str(l);
                text.push('\n');
            }
            blocks.push((lang.trim().to_string(), text));
        }
    }
    let langs: Vec<&str> = blocks.iter().map(|(l, _)| l.as_str()).collect();
    if langs != ["toml", "rust", "rust"] {
        return Err(format!(
            "the guide's code blocks are {langs:?}, expected toml, rust, rust"
        ));
    }
    Ok(blocks)
}
