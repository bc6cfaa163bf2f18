//! Label keys that mark engine objects as a bottle's, and the image labels a bundle image reads.
//!
//! Bottles are found by these labels, never by name prefix: a stray object named like ours but
//! without them is not ours to remove. [`BottleLabels`] is the schema: the planner encodes it,
//! the lifecycle decodes it.

use std::net::Ipv4Addr;

use crate::catalog::Catalog;
use crate::runtime::Labels;

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

/// Which object of a bottle carries the labels (the value of [`ROLE`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// The bottle's network.
    Network,
    /// The bottle's bundle container.
    Bundle,
}

impl Role {
    /// The label value: [`ROLE_NETWORK`] or [`ROLE_BUNDLE`].
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Network => ROLE_NETWORK,
            Role::Bundle => ROLE_BUNDLE,
        }
    }

    fn parse(value: &str) -> Option<Self> {
        match value {
            ROLE_NETWORK => Some(Role::Network),
            ROLE_BUNDLE => Some(Role::Bundle),
            _ => None,
        }
    }
}

/// The label schema of a bottle's objects, in one type: the planner encodes it onto the network
/// and the bundle, the lifecycle decodes it from what the engine lists. A value is lenient where
/// the engine may hand back less than was written (a label edited or lost by hand): such fields
/// are `None` or empty rather than an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BottleLabels {
    /// The resource-name prefix of the lifecycle that made the object ([`PREFIX`]).
    pub prefix: String,
    /// The bottle's slug ([`SLUG`]).
    pub slug: String,
    /// Network or bundle ([`ROLE`]).
    pub role: Role,
    /// The loopback address the bundle publishes on ([`LOOPBACK`]).
    pub loopback: Option<Ipv4Addr>,
    /// The bottle network's subnet ([`SUBNET`]), as written.
    pub subnet: Option<String>,
    /// On a bundle: the daemons it runs ([`DAEMONS`]); empty on a network.
    pub daemons: Vec<String>,
    /// On a bundle: the JSON catalog of its daemons ([`CATALOG`]); `None` on a network.
    pub catalog: Option<String>,
}

impl BottleLabels {
    /// The labels to put on the object: [`MANAGED`] and every field that is set.
    pub fn encode(&self) -> Labels {
        let mut labels = Labels::from([
            (MANAGED.into(), "true".into()),
            (PREFIX.into(), self.prefix.clone()),
            (SLUG.into(), self.slug.clone()),
            (ROLE.into(), self.role.as_str().into()),
        ]);
        if let Some(loopback) = self.loopback {
            labels.insert(LOOPBACK.into(), loopback.to_string());
        }
        if let Some(subnet) = &self.subnet {
            labels.insert(SUBNET.into(), subnet.clone());
        }
        if self.role == Role::Bundle {
            labels.insert(DAEMONS.into(), self.daemons.join(","));
        }
        if let Some(catalog) = &self.catalog {
            labels.insert(CATALOG.into(), catalog.clone());
        }
        labels
    }

    /// The schema read back from an object's labels; `None` when the object is not a managed
    /// bottle object (no [`MANAGED`], no [`SLUG`], or an unknown [`ROLE`]).
    pub fn decode(labels: &Labels) -> Option<Self> {
        if labels.get(MANAGED).map(String::as_str) != Some("true") {
            return None;
        }
        Some(BottleLabels {
            prefix: labels.get(PREFIX).cloned().unwrap_or_default(),
            slug: labels.get(SLUG)?.clone(),
            role: Role::parse(labels.get(ROLE)?)?,
            loopback: loopback(labels),
            subnet: labels.get(SUBNET).cloned(),
            daemons: labels
                .get(DAEMONS)
                .map(|d| {
                    d.split(',')
                        .filter(|s| !s.is_empty())
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default(),
            catalog: labels.get(CATALOG).cloned(),
        })
    }

    /// The bundle's catalog, parsed; `None` when the label is missing.
    pub fn catalog(&self) -> Option<Result<Catalog, crate::ValidationError>> {
        self.catalog.as_deref().map(Catalog::from_json)
    }
}

/// The [`LOOPBACK`] label of any object, parsed (networks of every prefix carry it, which is
/// how the loopback addresses in use are found).
pub fn loopback(labels: &Labels) -> Option<Ipv4Addr> {
    labels.get(LOOPBACK).and_then(|v| v.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundle() -> BottleLabels {
        BottleLabels {
            prefix: "bt".into(),
            slug: "demo".into(),
            role: Role::Bundle,
            loopback: Some(Ipv4Addr::new(127, 77, 0, 1)),
            subnet: Some("10.213.0.0/24".into()),
            daemons: vec!["egress".into(), "selfcheck".into()],
            catalog: Some("{\"daemons\":[]}".into()),
        }
    }

    #[test]
    fn encode_then_decode_gives_back_the_same_schema() {
        let b = bundle();
        let labels = b.encode();
        assert_eq!(labels[MANAGED], "true");
        assert_eq!(labels[ROLE], ROLE_BUNDLE);
        assert_eq!(labels[DAEMONS], "egress,selfcheck");
        assert_eq!(BottleLabels::decode(&labels), Some(b));

        let n = BottleLabels {
            role: Role::Network,
            daemons: Vec::new(),
            catalog: None,
            ..bundle()
        };
        let labels = n.encode();
        assert!(!labels.contains_key(DAEMONS) && !labels.contains_key(CATALOG));
        assert_eq!(BottleLabels::decode(&labels), Some(n));
    }

    #[test]
    fn objects_not_ours_do_not_decode() {
        let mut labels = bundle().encode();
        labels.remove(MANAGED);
        assert_eq!(BottleLabels::decode(&labels), None);
        let mut labels = bundle().encode();
        labels.insert(ROLE.into(), "other".into());
        assert_eq!(BottleLabels::decode(&labels), None);
        let mut labels = bundle().encode();
        labels.remove(SLUG);
        assert_eq!(BottleLabels::decode(&labels), None);
    }

    #[test]
    fn lost_optional_labels_decode_as_missing() {
        let mut labels = bundle().encode();
        labels.insert(LOOPBACK.into(), "not an address".into());
        labels.remove(DAEMONS);
        let b = BottleLabels::decode(&labels).unwrap();
        assert_eq!(b.loopback, None);
        assert!(b.daemons.is_empty());
    }
}
