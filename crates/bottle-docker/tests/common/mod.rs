//! Shared setup of the real-engine tests: the engine, the reference image, the fixture, and a
//! tiny image whose PID 1 ignores SIGTERM, built from this host's `sleep`.

#![allow(dead_code)] // Each test file uses a different part of this module.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use bottle_core::conformance::{ensure_reference_image, require_engine, Fixture};
use bottle_core::ContainerRuntime;
use bottle_docker::DockerRuntime;
use tokio::sync::OnceCell;

/// Name prefix of every object these tests create.
pub const PREFIX: &str = "bt-docker";
/// Subnets and loopback addresses reserved for Docker's tests (Podman's use other pools, so
/// both suites can run on one host at once).
pub const SUBNET_POOL: &str = "10.215.0.0/16";
pub const LOOPBACK_POOL: &str = "127.79.0.0/16";

/// The image `sleep_image_archive` builds.
pub const SLEEP_IMAGE: &str = "bt-docker-sleep:test";

/// Writes a line to the test's stderr directly, past libtest's capture, so that the run's
/// output shows what ran against Docker.
pub fn say(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// The engine; `None` (after a line saying so) when no engine answers outside CI. In CI a
/// missing engine fails the test.
pub async fn engine(test: &str) -> Option<DockerRuntime> {
    let docker = require_engine("docker", DockerRuntime::connect().await);
    if docker.is_none() {
        say(&format!(
            "docker: {test} skipped: no Docker Engine answers (run `cargo xtask engines`)"
        ));
    }
    docker
}

/// The engine, the reference image and the fixture, as [`engine`] says.
pub async fn setup(test: &str) -> Option<(Arc<dyn ContainerRuntime>, DockerRuntime, Fixture)> {
    let docker = engine(test).await?;
    let image = reference_image(&docker).await;
    let fixture = Fixture {
        image,
        prefix: PREFIX.into(),
        subnet_pool: SUBNET_POOL.parse().expect("valid pool"),
        loopback_pool: LOOPBACK_POOL.parse().expect("valid pool"),
    };
    let rt: Arc<dyn ContainerRuntime> = Arc::new(docker.clone());
    Some((rt, docker, fixture))
}

/// The reference image, loaded once per test binary (tests run in parallel).
async fn reference_image(rt: &DockerRuntime) -> String {
    static IMAGE: OnceCell<String> = OnceCell::const_new();
    IMAGE
        .get_or_init(|| ensure_reference_image(rt, env!("CARGO_MANIFEST_DIR")))
        .await
        .clone()
}

/// A `docker save` archive of [`SLEEP_IMAGE`]: this host's `/bin/sleep` and the libraries it
/// links, running `sleep infinity` as user 65534. As PID 1 of its namespace `sleep` has no
/// SIGTERM handler, so the kernel drops SIGTERM: the container only goes away by SIGKILL.
pub fn sleep_image_archive() -> PathBuf {
    static ARCHIVE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    ARCHIVE.get_or_init(build_sleep_archive).clone()
}

fn build_sleep_archive() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("bt-docker-sleep-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the archive directory");

    let ldd = output(Command::new("ldd").arg("/bin/sleep"));
    let mut files: Vec<String> = vec!["bin/sleep".into()];
    files.extend(
        ldd.split_whitespace()
            .filter(|w| w.starts_with('/'))
            .map(|w| w.trim_start_matches('/').to_string()),
    );
    // `-h` stores what symlinks point at: the loader is a symlink on Debian.
    output(
        Command::new("tar")
            .arg("-chf")
            .arg(dir.join("layer.tar"))
            .arg("-C")
            .arg("/")
            .args(&files),
    );
    let sha = output(Command::new("sha256sum").arg(dir.join("layer.tar")));
    let sha = sha
        .split_whitespace()
        .next()
        .expect("sha256sum prints a digest");
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
    std::fs::write(dir.join("config.json"), config.to_string()).expect("write config");
    let manifest = serde_json::json!([{
        "Config": "config.json",
        "RepoTags": [SLEEP_IMAGE],
        "Layers": ["layer.tar"]
    }]);
    std::fs::write(dir.join("manifest.json"), manifest.to_string()).expect("write manifest");
    let archive = dir.join("image.tar");
    output(
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
fn output(cmd: &mut Command) -> String {
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

/// Makes sure [`SLEEP_IMAGE`] is on the engine.
pub async fn ensure_sleep_image(rt: &DockerRuntime) {
    static LOADED: OnceCell<()> = OnceCell::const_new();
    LOADED
        .get_or_init(|| async {
            if rt.image(SLEEP_IMAGE).await.expect("image lookup").is_none() {
                rt.load_image(&sleep_image_archive())
                    .await
                    .expect("load the sleep image");
            }
        })
        .await;
}
