//! The two engines, reached through the benchmark's own raw client: the floor's API calls, and
//! the sweeping, checking and preparing that the benchmark does around every contender.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::http::UnixHttp;
use crate::job::Job;

/// Every object the benchmark creates has a name starting with this, and only those are swept.
pub const PREFIX: &str = "bt-bench";

/// Which container engine: the CLI's choice of engines.
pub use bottle_cli::cli::Engine;
/// The bundle image every contender starts: the CLI's.
pub use bottle_cli::DEFAULT_IMAGE as IMAGE;

/// An image whose PID 1 ignores SIGTERM, built by the conformance kit's builder (see
/// [`bottle_core::conformance::ensure_sigterm_deaf_image`]).
pub const DEAF_IMAGE: &str = "bt-bench-sleep:test";

/// An engine by its name (`docker`, `podman`), as `--runtime` takes it.
pub fn parse(name: &str) -> Option<Engine> {
    Engine::ALL.into_iter().find(|e| e.name() == name)
}

/// Connects to `engine` as the CLI does (its sockets, its errors).
pub async fn connect(engine: Engine) -> Result<bottle_cli::runtime::Connected, String> {
    bottle_cli::runtime::connect(engine, Default::default())
        .await
        .map_err(|why| why.into_failure().to_string())
}

/// The unix socket the CLI's adapter for `engine` found answering.
pub async fn socket(engine: Engine) -> Result<String, String> {
    let endpoint = connect(engine).await?.info.endpoint;
    endpoint
        .strip_prefix("unix://")
        .map(String::from)
        .ok_or_else(|| {
            format!(
                "the {} engine answers at {endpoint}: the benchmark's raw client needs a unix socket",
                engine.name()
            )
        })
}

/// The raw engine API of one engine.
#[derive(Debug, Clone)]
pub struct Api {
    pub engine: Engine,
    pub http: UnixHttp,
}

/// Docker's API paths are unversioned (the engine answers at its own version); libpod's carry
/// the version Podman 4 serves.
const LIBPOD: &str = "/v4.0.0/libpod";

impl Api {
    /// The raw API of `engine`, on the socket the CLI's adapter connects to.
    pub async fn connect(engine: Engine) -> Result<Self, String> {
        Ok(Api {
            engine,
            http: UnixHttp::new(socket(engine).await?),
        })
    }

    /// The engine's version, or why it does not answer.
    pub async fn version(&self) -> Result<String, String> {
        let r = self.http.call("GET", "/version", None, &[]).await?;
        let v = r.json();
        Ok(format!(
            "{} (API {})",
            v["Version"].as_str().unwrap_or("?"),
            v["ApiVersion"].as_str().unwrap_or("?")
        ))
    }

    /// Whether the image is present.
    pub async fn has_image(&self, image: &str) -> Result<bool, String> {
        let r = self
            .http
            .call("GET", &format!("/images/{image}/json"), None, &[404])
            .await?;
        Ok(r.ok())
    }

    // ---- the floor: the minimal API sequence of one bottle ----

    /// Creates the job's network with its subnet and gateway.
    pub async fn create_network(&self, job: &Job) -> Result<(), String> {
        let labels = json!({ "bt-bench": "true" });
        match self.engine {
            Engine::Docker => {
                let body = json!({
                    "Name": job.network,
                    "CheckDuplicate": true,
                    "Driver": "bridge",
                    "IPAM": {"Driver": "default", "Config": [
                        {"Subnet": job.subnet, "Gateway": job.gateway.to_string()}
                    ]},
                    "Labels": labels,
                });
                self.http
                    .call("POST", "/networks/create", Some(&body), &[])
                    .await?;
            }
            Engine::Podman => {
                let body = json!({
                    "name": job.network,
                    "driver": "bridge",
                    "subnets": [{"subnet": job.subnet, "gateway": job.gateway.to_string()}],
                    "labels": labels,
                });
                self.http
                    .call(
                        "POST",
                        &format!("{LIBPOD}/networks/create"),
                        Some(&body),
                        &[],
                    )
                    .await?;
            }
        }
        Ok(())
    }

    /// Creates the bundle: pinned IP, the job's ports on its loopback address with no host
    /// port, and the same hardening and limits bottle asks for.
    pub async fn create_container(&self, job: &Job, image: &str) -> Result<(), String> {
        let labels = json!({ "bt-bench": "true", "bt-bench.slug": job.slug });
        match self.engine {
            Engine::Docker => {
                let bindings: serde_json::Map<String, Value> = job
                    .ports
                    .iter()
                    .map(|p| {
                        (
                            format!("{p}/tcp"),
                            json!([{"HostIp": job.loopback.to_string(), "HostPort": ""}]),
                        )
                    })
                    .collect();
                let exposed: serde_json::Map<String, Value> = job
                    .ports
                    .iter()
                    .map(|p| (format!("{p}/tcp"), json!({})))
                    .collect();
                let body = json!({
                    "Image": image,
                    "Env": [format!("BOTTLE_DAEMONS={}", job.daemons)],
                    "Labels": labels,
                    "ExposedPorts": exposed,
                    "HostConfig": {
                        "NetworkMode": job.network,
                        "PortBindings": bindings,
                        "SecurityOpt": ["no-new-privileges"],
                        "CapDrop": ["ALL"],
                        "ReadonlyRootfs": true,
                        "Tmpfs": {"/tmp": "rw,noexec,nosuid,nodev,size=16m"},
                        "Memory": job.memory_bytes,
                        "MemorySwap": job.memory_bytes,
                        "PidsLimit": job.pids,
                    },
                    "NetworkingConfig": {"EndpointsConfig": {
                        job.network.clone(): {"IPAMConfig": {"IPv4Address": job.ip.to_string()}}
                    }},
                });
                self.http
                    .call(
                        "POST",
                        &format!("/containers/create?name={}", job.container),
                        Some(&body),
                        &[],
                    )
                    .await?;
            }
            Engine::Podman => {
                let mappings: Vec<Value> = job
                    .ports
                    .iter()
                    .map(|p| {
                        json!({"container_port": p, "host_ip": job.loopback.to_string(), "protocol": "tcp"})
                    })
                    .collect();
                let body = json!({
                    "name": job.container,
                    "image": image,
                    "netns": {"nsmode": "bridge"},
                    "Networks": {job.network.clone(): {"static_ips": [job.ip.to_string()]}},
                    "portmappings": mappings,
                    "env": {"BOTTLE_DAEMONS": job.daemons},
                    "labels": labels,
                    "mounts": [{"destination": "/tmp", "source": "tmpfs", "type": "tmpfs",
                                "options": ["rw", "nosuid", "nodev", "noexec"]}],
                    "read_only_filesystem": true,
                    "cap_drop": ["ALL"],
                    "no_new_privileges": true,
                    "resource_limits": {"memory": {"limit": job.memory_bytes},
                                        "pids": {"limit": job.pids}},
                });
                self.http
                    .call(
                        "POST",
                        &format!("{LIBPOD}/containers/create"),
                        Some(&body),
                        &[],
                    )
                    .await?;
            }
        }
        Ok(())
    }

    pub async fn start(&self, name: &str) -> Result<(), String> {
        let path = match self.engine {
            Engine::Docker => format!("/containers/{name}/start"),
            Engine::Podman => format!("{LIBPOD}/containers/{name}/start"),
        };
        self.http.call("POST", &path, None, &[304]).await.map(drop)
    }

    /// The container's inspect document.
    pub async fn inspect(&self, name: &str) -> Result<Value, String> {
        let path = match self.engine {
            Engine::Docker => format!("/containers/{name}/json"),
            Engine::Podman => format!("{LIBPOD}/containers/{name}/json"),
        };
        Ok(self.http.call("GET", &path, None, &[]).await?.json())
    }

    /// Container port -> host port on `loopback`, once every port has one.
    pub fn host_ports(
        inspect: &Value,
        loopback: Ipv4Addr,
        ports: &[u16],
    ) -> Option<BTreeMap<u16, u16>> {
        let map = &inspect["NetworkSettings"]["Ports"];
        let lo = loopback.to_string();
        ports
            .iter()
            .map(|p| {
                let host = map[format!("{p}/tcp")]
                    .as_array()?
                    .iter()
                    .filter(|b| b["HostIp"].as_str() == Some(lo.as_str()))
                    .find_map(|b| b["HostPort"].as_str()?.parse::<u16>().ok())
                    .filter(|h| *h != 0)?;
                Some((*p, host))
            })
            .collect()
    }

    /// Reads host ports, re-reading (bounded) while the engine has not assigned them yet.
    pub async fn wait_host_ports(&self, job: &Job) -> Result<BTreeMap<u16, u16>, String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let doc = self.inspect(&job.container).await?;
            if let Some(ports) = Self::host_ports(&doc, job.loopback, &job.ports) {
                return Ok(ports);
            }
            if Instant::now() > deadline {
                return Err(format!("{}: no host ports after 10 s", job.container));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Force-removes a container without a grace period; a missing one is fine.
    pub async fn remove_container(&self, name: &str) -> Result<(), String> {
        let path = match self.engine {
            Engine::Docker => format!("/containers/{name}?force=true&v=true"),
            Engine::Podman => format!("{LIBPOD}/containers/{name}?force=true&timeout=0&v=true"),
        };
        self.http
            .call("DELETE", &path, None, &[404])
            .await
            .map(drop)
    }

    /// Removes a network; a missing one is fine.
    pub async fn remove_network(&self, name: &str) -> Result<(), String> {
        let path = match self.engine {
            Engine::Docker => format!("/networks/{name}"),
            Engine::Podman => format!("{LIBPOD}/networks/{name}"),
        };
        self.http
            .call("DELETE", &path, None, &[404])
            .await
            .map(drop)
    }

    // ---- around the contenders ----

    /// Whether a container or network of this exact name exists.
    pub async fn exists(&self, kind: Kind, name: &str) -> Result<bool, String> {
        let path = match kind {
            Kind::Container => format!("/containers/{name}/json"),
            Kind::Network => format!("/networks/{name}"),
        };
        let r = self.http.call("GET", &path, None, &[404]).await?;
        Ok(r.ok())
    }

    /// Names of every container and network whose name starts with [`PREFIX`].
    pub async fn ours(&self) -> Result<(Vec<String>, Vec<String>), String> {
        let containers = self
            .http
            .call("GET", "/containers/json?all=true", None, &[])
            .await?
            .json();
        let networks = self.http.call("GET", "/networks", None, &[]).await?.json();
        let pick = |v: &Value, field: &str| -> Vec<String> {
            v.as_array()
                .into_iter()
                .flatten()
                .flat_map(|o| match &o[field] {
                    Value::Array(names) => names
                        .iter()
                        .filter_map(|n| n.as_str().map(|s| s.trim_start_matches('/').to_string()))
                        .collect(),
                    Value::String(s) => vec![s.clone()],
                    _ => Vec::new(),
                })
                .filter(|n| n.starts_with(PREFIX))
                .collect()
        };
        Ok((pick(&containers, "Names"), pick(&networks, "Name")))
    }

    /// Removes every container, then every network, named with [`PREFIX`]; returns how many.
    pub async fn sweep(&self) -> Result<usize, String> {
        let (containers, networks) = self.ours().await?;
        for c in &containers {
            self.remove_container(c).await?;
        }
        for n in &networks {
            self.remove_network(n).await?;
        }
        Ok(containers.len() + networks.len())
    }

    /// Sends `signal` to a container's PID 1.
    pub async fn kill(&self, name: &str, signal: &str) -> Result<(), String> {
        let path = match self.engine {
            Engine::Docker => format!("/containers/{name}/kill?signal={signal}"),
            Engine::Podman => format!("{LIBPOD}/containers/{name}/kill?signal={signal}"),
        };
        self.http.call("POST", &path, None, &[]).await.map(drop)
    }

    /// Whether a container is running.
    pub async fn running(&self, name: &str) -> Result<bool, String> {
        let doc = self.inspect(name).await?;
        Ok(doc["State"]["Running"].as_bool().unwrap_or(false))
    }
}

/// A kind of engine object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Container,
    Network,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_ports_only_on_the_loopback_address() {
        let lo: Ipv4Addr = "127.95.0.7".parse().unwrap();
        let doc = json!({"NetworkSettings": {"Ports": {
            "9099/tcp": [{"HostIp": "127.95.0.7", "HostPort": "40001"}],
            "9100/tcp": [{"HostIp": "0.0.0.0", "HostPort": "40002"}],
        }}});
        assert_eq!(
            Api::host_ports(&doc, lo, &[9099]),
            Some(BTreeMap::from([(9099, 40001)]))
        );
        assert_eq!(Api::host_ports(&doc, lo, &[9099, 9100]), None);
    }
}
