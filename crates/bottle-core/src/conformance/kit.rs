//! The kit a backend's tests use around the cases: the in-memory engine and fixture, whether
//! this is CI, skipping or failing without an engine, and the reference and fixture images.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::Fixture;
use crate::labels;
use crate::runtime::ContainerRuntime;
use crate::selfcheck;

/// An in-memory engine holding what a [`Fixture`] needs, and that fixture: an image whose
/// catalog is the seed's plus `selfcheck`, and an image whose PID 1 ignores SIGTERM. For the
/// in-memory suites, and for an adapter that starts out delegating to the in-memory engine.
pub fn memory_engine() -> (crate::InMemoryRuntime, Fixture) {
    let rt = crate::InMemoryRuntime::new();
    let mut catalog = crate::Catalog::seed();
    catalog.daemons.push(selfcheck::daemon_def());
    rt.add_image(
        "bottle-sidecars:test",
        [(labels::CATALOG.to_string(), catalog.to_json())].into(),
    );
    rt.add_image(
        "bt-mem-sleep:test",
        [("io.bottle.test".to_string(), "sleep".to_string())].into(),
    );
    let fx = Fixture {
        image: "bottle-sidecars:test".into(),
        prefix: "bt-mem".into(),
        subnet_pool: "10.214.0.0/16".parse().expect("a valid pool"),
        loopback_pool: "127.78.0.0/16".parse().expect("a valid pool"),
        sigterm_deaf_image: "bt-mem-sleep:test".into(),
    };
    (rt, fx)
}

/// Whether this run is CI (`CI=true`), where a missing engine is a failure, never a skip.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// Decides what a real-engine test does with the result of connecting to its engine: the
/// runtime when it answers; in CI a panic naming the problem; elsewhere `None` after one line
/// that says how to run the test.
#[allow(clippy::print_stderr)] // A test helper: the skip line is for the person running tests.
pub fn require_engine<R, E: std::fmt::Display>(
    engine: &str,
    connected: std::result::Result<R, E>,
) -> Option<R> {
    match connected {
        Ok(rt) => Some(rt),
        Err(e) if in_ci() => panic!("{engine} engine required in CI but unavailable: {e}"),
        Err(e) => {
            eprintln!(
                "skipping {engine} tests: {e}; start the engine to run them (with CI=true a \
                 missing engine fails them instead)"
            );
            None
        }
    }
}

/// The reference image archive (bottle's build of the reference image writes it):
/// `$BOTTLE_IMAGE_ARCHIVE`, else
/// `target/bottle-sidecars.tar` of the workspace that contains `manifest_dir`.
pub fn image_archive(manifest_dir: &str) -> std::path::PathBuf {
    if let Some(p) = std::env::var_os("BOTTLE_IMAGE_ARCHIVE") {
        return p.into();
    }
    let mut dir = std::path::PathBuf::from(manifest_dir);
    while !dir.join("target").is_dir() && dir.pop() {}
    dir.join("target").join("bottle-sidecars.tar")
}

/// Makes the reference image on `rt` the one in the reference image archive, and
/// returns its reference. The archive is loaded whenever it exists, so an older image of the
/// same name left on the engine by an earlier build is replaced; without an archive, an image
/// already present is used.
pub async fn ensure_reference_image(rt: &dyn ContainerRuntime, manifest_dir: &str) -> String {
    let reference = crate::lifecycle::DEFAULT_IMAGE;
    let archive = image_archive(manifest_dir);
    if archive.exists() {
        rt.load_image(&archive)
            .await
            .expect("load the reference image");
    } else {
        assert!(
            rt.image(reference).await.expect("image lookup").is_some(),
            "reference image {reference} is not on the engine and its archive {} is missing: build the reference image archive and point BOTTLE_IMAGE_ARCHIVE at it",
            archive.display()
        );
    }
    assert!(
        rt.image(reference).await.expect("image lookup").is_some(),
        "{reference} present after loading {}",
        archive.display()
    );
    reference.to_string()
}

/// Makes sure the image `tag` is on `rt`: this host's `/bin/sleep` and the libraries it links,
/// running `sleep infinity` as user 65534 with the label `io.bottle.test=sleep`. As PID 1 of
/// its namespace `sleep` has no SIGTERM handler, so the kernel drops SIGTERM: such a container
/// only goes away by SIGKILL. Built (under `dir`) and loaded only when missing; returns `tag`.
pub async fn ensure_sigterm_deaf_image<'a>(
    rt: &dyn ContainerRuntime,
    tag: &'a str,
    dir: &Path,
) -> &'a str {
    if rt.image(tag).await.expect("image lookup").is_none() {
        let names = rt
            .load_image(&sigterm_deaf_archive(tag, dir))
            .await
            .expect("load the SIGTERM-deaf image");
        assert!(
            names
                .iter()
                .any(|n| n == tag || n.ends_with(&format!("/{tag}"))),
            "loaded names {names:?} include {tag}"
        );
    }
    tag
}

/// Writes the `docker save` archive of [`ensure_sigterm_deaf_image`]'s image under `dir` and
/// returns its path.
pub fn sigterm_deaf_archive(tag: &str, dir: &Path) -> PathBuf {
    let dir = dir.join(format!("sigterm-deaf-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the archive directory");
    let ldd = stdout(Command::new("ldd").arg("/bin/sleep"));
    let mut files = vec!["bin/sleep".to_string()];
    files.extend(
        ldd.split_whitespace()
            .filter(|w| w.starts_with('/'))
            .map(|w| w.trim_start_matches('/').to_string()),
    );
    // `-h` stores what symlinks point at: the dynamic loader is one.
    stdout(
        Command::new("tar")
            .arg("-chf")
            .arg(dir.join("layer.tar"))
            .arg("-C")
            .arg("/")
            .args(&files),
    );
    let sha = stdout(Command::new("sha256sum").arg(dir.join("layer.tar")));
    let sha = sha.split_whitespace().next().expect("a digest");
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    let config = serde_json::json!({
        "architecture": arch,
        "os": "linux",
        "config": {
            "User": "65534",
            "Cmd": ["/bin/sleep", "infinity"],
            "Labels": {"io.bottle.test": "sleep"}
        },
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{sha}")]}
    });
    let manifest = serde_json::json!([
        {"Config": "config.json", "RepoTags": [tag], "Layers": ["layer.tar"]}
    ]);
    std::fs::write(dir.join("config.json"), config.to_string()).expect("write config.json");
    std::fs::write(dir.join("manifest.json"), manifest.to_string()).expect("write manifest.json");
    let archive = dir.join("image.tar");
    stdout(
        Command::new("tar")
            .arg("-cf")
            .arg(&archive)
            .arg("-C")
            .arg(&dir)
            .args(["manifest.json", "config.json", "layer.tar"]),
    );
    archive
}

/// Runs a command and returns its stdout; panics naming the command when it fails.
fn stdout(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
