//! `down` (one bottle, by its labels) and `gc` (whatever no whole bottle owns).

use std::collections::BTreeSet;

use tracing::{debug, info, info_span, Instrument};

use super::{Lifecycle, Progress, Removed, Step};
use crate::error::{ObjectKind, Result};
use crate::plan;
use crate::runtime::ContainerState;

impl Lifecycle {
    /// Removes a bottle's bundle, then its network, found by labels. Nothing there is success.
    pub async fn down(&self, slug: &str, progress: &dyn Progress) -> Result<Vec<Removed>> {
        crate::spec::validate_slug(slug)?;
        let span = info_span!("down", slug, runtime = self.runtime.name());
        async {
            let selector = self.selector(Some(slug));
            let containers = self.runtime.list_containers(&selector).await?;
            let mut removed = Vec::new();
            for c in containers {
                let object = Removed::new(ObjectKind::Container, c.name, slug, "down");
                removed.push(self.remove(object, Some(progress)).await?);
            }
            // Listed after the containers are gone, so a network created meanwhile by a
            // racing `up` of the same slug is seen too.
            let networks = self.runtime.list_networks(&selector).await?;
            for n in networks {
                let object = Removed::new(ObjectKind::Network, n.name, slug, "down");
                removed.push(self.remove(object, Some(progress)).await?);
            }
            info!(objects = removed.len(), "bottle down");
            Ok(removed)
        }
        .instrument(span)
        .await
    }

    /// Removes objects of ours that no whole bottle owns: a network without its bundle, a
    /// bundle that is not running, a bundle without its network. A running bundle whose
    /// daemons do not answer is left alone (its init restarts them; `down` removes it), and so
    /// is a bottle that a live launch (of any process on this host) is still bringing up. With
    /// `dry_run`, only lists them.
    pub async fn gc(&self, dry_run: bool) -> Result<Vec<Removed>> {
        let bottles = self.list().await?;
        // Read after listing: a launch that was half-way through when the engine was listed
        // still holds its reservation (until its ports are published), and is left alone.
        let launching: BTreeSet<String> = self
            .alloc
            .lock()
            .await?
            .pending()?
            .into_iter()
            .map(|p| p.network)
            .collect();
        let mut removed = Vec::new();
        for b in &bottles {
            let network = plan::network_name(self.prefix(), &b.slug);
            if launching.contains(&network) {
                debug!(slug = %b.slug, "being launched; not collected");
                continue;
            }
            let reason = match (&b.network, &b.container, &b.state) {
                (Some(_), None, _) => "network without its bundle".to_string(),
                (None, Some(_), _) => "bundle without its network".to_string(),
                (_, _, Some(state)) if *state != ContainerState::Running => {
                    format!("bundle is {state}")
                }
                _ => continue,
            };
            // The bundle first: a network cannot be removed while a container is attached.
            let objects = [
                (ObjectKind::Container, &b.container),
                (ObjectKind::Network, &b.network),
            ];
            for (kind, name) in objects {
                let Some(name) = name else { continue };
                let object = Removed::new(kind, name.clone(), &b.slug, &reason);
                removed.push(if dry_run {
                    object
                } else {
                    self.remove(object, None).await?
                });
            }
        }
        Ok(removed)
    }

    /// Removes `object` (reporting the step to `progress` when given) and returns it.
    async fn remove(&self, object: Removed, progress: Option<&dyn Progress>) -> Result<Removed> {
        if let Some(progress) = progress {
            progress.step(
                &object.slug,
                &Step::Removing {
                    kind: object.kind,
                    name: object.name.clone(),
                },
            );
        }
        match object.kind {
            ObjectKind::Container => self.runtime.remove_container(&object.name).await?,
            ObjectKind::Network => self.runtime.remove_network(&object.name).await?,
            // Neither `down` nor `gc` removes images.
            ObjectKind::Image => {}
        }
        Ok(object)
    }
}
