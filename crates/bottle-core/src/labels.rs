//! Label keys that mark engine objects as a bottle's, and the image labels a bundle image reads.
//!
//! Bottles are found by these labels, never by name prefix: a stray object named like ours but
//! without them is not ours to remove.

/// Present (`true`) on every object the lifecycle creates.
pub const MANAGED: &str = "io.bottle.managed";
/// The resource-name prefix of the lifecycle that created the object (`bottle` by default), so
/// several independent namespaces can share one engine.
pub const PREFIX: &str = "io.bottle.prefix";
/// The bottle's slug.
pub const SLUG: &str = "io.bottle.slug";
/// `network` or `bundle`.
pub const ROLE: &str = "io.bottle.role";
/// The loopback address the bundle publishes on.
pub const LOOPBACK: &str = "io.bottle.loopback";
/// The bottle network's subnet.
pub const SUBNET: &str = "io.bottle.subnet";
/// The daemons the bundle runs, comma-separated.
pub const DAEMONS: &str = "io.bottle.daemons";
/// On a bundle: the JSON catalog of the daemons it runs, so endpoints can be rebuilt from the
/// engine alone. On an image: the catalog the image provides.
pub const CATALOG: &str = "io.bottle.catalog";
/// On an image: capabilities its daemons need, comma-separated (`NET_BIND_SERVICE`).
pub const IMAGE_CAP_ADD: &str = "io.bottle.cap-add";
/// On an image: paths its daemons write to, comma-separated; each gets a tmpfs.
pub const IMAGE_TMPFS: &str = "io.bottle.tmpfs";

/// The value of [`ROLE`] on a bottle's network.
pub const ROLE_NETWORK: &str = "network";
/// The value of [`ROLE`] on a bottle's bundle container.
pub const ROLE_BUNDLE: &str = "bundle";
