//! What the real-Podman tests share: connecting (a failure in CI, a skip elsewhere), the
//! reference image, the conformance fixture with Podman's own pools, and a one-binary image
//! whose PID 1 ignores SIGTERM.

#![allow(dead_code)] // Each test binary uses its own part of this module.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use bottle_core::conformance::{self, ensure_reference_image, require_engine, Fixture};
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
    let sigterm_deaf_image = ensure_sigterm_deaf_image(&rt).await.to_string();
    let fixture = Fixture {
        image,
        prefix: PREFIX.into(),
        subnet_pool: SUBNET_POOL.parse().expect("subnet pool"),
        loopback_pool: LOOPBACK_POOL.parse().expect("loopback pool"),
        sigterm_deaf_image,
    };
    Some((Arc::new(rt.clone()), rt, fixture))
}

/// Loads [`SIGTERM_DEAF_IMAGE`] once (see
/// `bottle_core::conformance::ensure_sigterm_deaf_image`): only a kill removes it quickly.
pub async fn ensure_sigterm_deaf_image(rt: &PodmanRuntime) -> &'static str {
    static LOADED: OnceCell<()> = OnceCell::const_new();
    LOADED
        .get_or_init(|| async {
            conformance::ensure_sigterm_deaf_image(
                rt,
                SIGTERM_DEAF_IMAGE,
                Path::new(env!("CARGO_TARGET_TMPDIR")),
            )
            .await;
        })
        .await;
    SIGTERM_DEAF_IMAGE
}
