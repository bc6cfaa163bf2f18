//! What the real-Podman tests share: connecting (a failure in CI, a skip elsewhere), the
//! reference image, the conformance fixture with Podman's own pools, and a one-binary image
//! whose PID 1 ignores SIGTERM.

#![allow(dead_code)] // Each test binary uses its own part of this module.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use bottle_core::conformance::{ensure_reference_image, require_engine, Fixture};
use bottle_core::ContainerRuntime;
use bottle_podman::PodmanRuntime;
use tokio::sync::OnceCell;

/// Prefix of every object these tests create.
pub const PREFIX: &str = "bt-podman";
/// Pools reserved for the Podman tests; Docker's tests use others, so both run at once.
pub const SUBNET_POOL: &str = "10.216.0.0/16";
pub const LOOPBACK_POOL: &str = "127.80.0.0/16";
/// The image [`ensure_sigterm_deaf_image`] loads.
pub const SIGTERM_DEAF_IMAGE: &str = "bt-podman-sleep:test";

/// A line on stderr that libtest does not capture, so a run's output shows what ran against
/// Podman.
pub fn say(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// The engine, or `None` after saying why the test does nothing (only outside CI: in CI
/// `require_engine` fails the test).
pub async fn podman(test: &str) -> Option<PodmanRuntime> {
    let rt = require_engine("podman", PodmanRuntime::connect().await);
    if rt.is_none() {
        say(&format!(
            "podman: {test}: skipped, no Podman service answers"
        ));
    }
    rt
}

/// The engine as the lifecycle uses it, the engine itself, and the fixture with the reference
/// image present.
pub async fn setup(test: &str) -> Option<(Arc<dyn ContainerRuntime>, PodmanRuntime, Fixture)> {
    let rt = podman(test).await?;
    static IMAGE: OnceCell<String> = OnceCell::const_new();
    let image = IMAGE
        .get_or_init(|| ensure_reference_image(&rt, env!("CARGO_MANIFEST_DIR")))
        .await
        .clone();
    let fixture = Fixture {
        image,
        prefix: PREFIX.into(),
        subnet_pool: SUBNET_POOL.parse().expect("subnet pool"),
        loopback_pool: LOOPBACK_POOL.parse().expect("loopback pool"),
    };
    Some((Arc::new(rt.clone()), rt, fixture))
}

/// Loads [`SIGTERM_DEAF_IMAGE`] once: `sleep infinity` from this host's `/bin/sleep`. As PID 1
/// without a SIGTERM handler it never reacts to SIGTERM, so only a kill removes it quickly.
pub async fn ensure_sigterm_deaf_image(rt: &PodmanRuntime) -> &'static str {
    static LOADED: OnceCell<()> = OnceCell::const_new();
    LOADED
        .get_or_init(|| async {
            if rt
                .image(SIGTERM_DEAF_IMAGE)
                .await
                .expect("image lookup")
                .is_none()
            {
                let archive = sleep_archive();
                let names = rt.load_image(&archive).await.expect("load the sleep image");
                assert!(
                    names.iter().any(|n| n == SIGTERM_DEAF_IMAGE),
                    "loaded names {names:?} include {SIGTERM_DEAF_IMAGE}"
                );
            }
        })
        .await;
    SIGTERM_DEAF_IMAGE
}

/// Writes a `docker save`-format archive with one layer holding `/bin/sleep` and the shared
/// objects it needs, and returns its path.
fn sleep_archive() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("bt-podman-sleep-image");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("archive directory");
    let ldd = stdout(Command::new("ldd").arg("/bin/sleep"));
    let mut paths = vec!["bin/sleep".to_string()];
    for word in ldd.split_whitespace().filter(|w| w.starts_with('/')) {
        paths.push(word.trim_start_matches('/').to_string());
    }
    // `h` follows symlinks (the dynamic loader is one), so the layer holds real files.
    stdout(
        Command::new("tar")
            .arg("chf")
            .arg(dir.join("layer.tar"))
            .arg("-C")
            .arg("/")
            .args(&paths),
    );
    let digest = stdout(Command::new("sha256sum").arg(dir.join("layer.tar")));
    let digest = digest.split_whitespace().next().expect("a digest");
    let config = serde_json::json!({
        "architecture": if cfg!(target_arch = "aarch64") { "arm64" } else { "amd64" },
        "os": "linux",
        "config": {"User": "65534:65534", "Entrypoint": ["/bin/sleep"], "Cmd": ["infinity"]},
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{digest}")]},
    });
    let manifest = serde_json::json!([
        {"Config": "config.json", "RepoTags": [SIGTERM_DEAF_IMAGE], "Layers": ["layer.tar"]}
    ]);
    std::fs::write(dir.join("config.json"), config.to_string()).expect("config.json");
    std::fs::write(dir.join("manifest.json"), manifest.to_string()).expect("manifest.json");
    let archive = dir.join("sleep.tar");
    stdout(
        Command::new("tar")
            .arg("cf")
            .arg(&archive)
            .arg("-C")
            .arg(&dir)
            .args(["manifest.json", "config.json", "layer.tar"]),
    );
    archive
}

fn stdout(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
