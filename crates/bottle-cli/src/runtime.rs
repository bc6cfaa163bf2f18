//! Runtime selection: connects to the engine named by `--runtime` (Docker when `--context` is
//! given), or to the first that answers (Docker, then Podman). Each adapter sits behind its
//! cargo feature; this is the one module that names the adapter crates.
//!
//! Docker's endpoint is found as the `docker` CLI finds it (`bottle_docker::endpoint`), and a
//! Docker engine on another host is refused before it is contacted (a Podman service on
//! another host once connected, before anything is created): a bottle's ports are published
//! on the loopback of the engine's host, and this host can neither probe them nor hand an
//! agent here an address on them (`docs/ARCHITECTURE.md`, "Remote engines").

use std::sync::Arc;

use bottle_core::runtime::EngineInfo;
use bottle_core::ContainerRuntime;
use tracing::{debug, info};

use crate::cli::{Engine, Global};
use crate::exit::Failure;
use crate::hint::Hint;

/// A connected engine that answered `info`.
#[derive(Debug, Clone)]
pub struct Connected {
    pub engine: Engine,
    pub runtime: Arc<dyn ContainerRuntime>,
    pub info: EngineInfo,
    /// Where the engine was found and how (Docker's adapter says; `None` for the others).
    pub reach: Option<Reach>,
}

/// Where an engine is, how that was chosen, and whose loopback its published ports are on.
#[derive(Debug, Clone)]
pub struct Reach {
    /// The address as given (`unix:///…`, `tcp://…`, `ssh://…`).
    pub endpoint: String,
    /// `--context ci`, `DOCKER_HOST`, `DOCKER_CONTEXT=ci`, `context ci from ~/.docker/config.json`,
    /// `default socket`.
    pub chosen_by: String,
    /// `"local"` (a socket of this host), `"this-host"` (tcp:// or ssh:// to this host),
    /// `"remote"` (another host).
    pub locality: &'static str,
    /// Whether the engine runs rootless (Docker: asked of the engine, only for `doctor`; Podman:
    /// seen from its socket's owner); `None` where unknown.
    pub rootless: Option<bool>,
    /// Whether the engine applies a bundle's memory and pids limits (Podman, asked only for
    /// `doctor`: a rootless service on a cgroup v1 host does not); `None` where not asked.
    pub applies_limits: Option<bool>,
}

/// Why an engine could not be used.
#[derive(Debug)]
pub enum Unusable {
    /// This binary was built without the engine's adapter.
    NotBuilt(Engine),
    /// The endpoint settings (context, `DOCKER_HOST`, the CLI's files) are wrong; nothing was
    /// contacted.
    #[cfg_attr(not(feature = "docker"), allow(dead_code))] // Only Docker's discovery says so.
    Endpoint {
        /// Where the bad value came from.
        source: String,
        problem: String,
        hint: String,
    },
    /// The engine runs on another host (refused before it was contacted).
    Remote(Reach),
    /// The adapter could not reach or talk to the engine.
    Failed(bottle_core::Error, Option<Reach>),
}

impl Unusable {
    pub fn into_failure(self) -> Failure {
        match self {
            Unusable::NotBuilt(engine) => not_built(engine),
            Unusable::Endpoint {
                source,
                problem,
                hint,
            } => Failure::input(format!("{source}: {problem}"), hint),
            Unusable::Remote(reach) => remote(&reach),
            Unusable::Failed(e, _) => e.into(),
        }
    }
}

/// The refusal of an engine on another host.
fn remote(reach: &Reach) -> Failure {
    Failure::input(
        format!(
            "the engine at {} ({}) runs on another host: a bottle's ports are published on the loopback of the engine's host, which this host can neither check nor hand to an agent here (its allowlist is one loopback address)",
            reach.endpoint, reach.chosen_by
        ),
        "run bottle and the agent on the engine's host (over ssh, say), or choose an engine on this host (Docker: `--context default`, or unset DOCKER_HOST and DOCKER_CONTEXT; Podman: unset CONTAINER_HOST)",
    )
}

fn not_built(engine: Engine) -> Failure {
    let name = engine.name();
    Failure::input(
        format!("this bottle was built without the {name} runtime (feature `{name}`)"),
        format!(
            "rebuild with `cargo build -p bottle-cli --features {name}`, or choose another engine with --runtime"
        ),
    )
}

/// What a connection is for.
#[derive(Debug, Clone, Copy)]
#[cfg_attr(not(feature = "docker"), allow(dead_code))] // Context and facts are Docker's.
pub struct Purpose<'a> {
    /// `--context NAME`.
    pub context: Option<&'a str>,
    /// Refuse an engine on another host (every command but `doctor`, which reports it).
    pub refuse_remote: bool,
    /// Ask the engine for the facts `doctor` reports (rootless or not).
    pub facts: bool,
}

impl Default for Purpose<'_> {
    /// What every command but `doctor` asks: no context, an engine on another host refused.
    fn default() -> Self {
        Purpose {
            context: None,
            refuse_remote: true,
            facts: false,
        }
    }
}

type Adapter = Result<(Arc<dyn ContainerRuntime>, Option<Reach>), Unusable>;

/// Connects to one engine with its adapter; `None` when the adapter is not built in.
async fn connect_adapter(engine: Engine, purpose: Purpose<'_>) -> Option<Adapter> {
    match engine {
        Engine::Docker => docker(purpose).await,
        Engine::Podman => podman(purpose).await,
    }
}

#[cfg(feature = "docker")]
async fn docker(purpose: Purpose<'_>) -> Option<Adapter> {
    use bottle_docker::endpoint::{self, Locality, Sources};
    let found = match endpoint::discover(&Sources::from_env(purpose.context)) {
        Ok(found) => found,
        Err(e) => {
            return Some(Err(Unusable::Endpoint {
                source: e.source,
                problem: e.problem,
                hint: e.hint,
            }))
        }
    };
    let locality = found.locality();
    let mut reach = Reach {
        endpoint: found.host.clone(),
        chosen_by: found.chosen_by.clone(),
        locality: locality.as_str(),
        rootless: None,
        applies_limits: None,
    };
    if purpose.refuse_remote && locality == Locality::Remote {
        return Some(Err(Unusable::Remote(reach)));
    }
    let rt = match bottle_docker::DockerRuntime::connect_endpoint(found).await {
        Ok(rt) => rt,
        Err(e) => return Some(Err(Unusable::Failed(e.into(), Some(reach)))),
    };
    if purpose.facts {
        reach.rootless = rt.rootless().await.ok();
    }
    Some(Ok((Arc::new(rt) as Arc<dyn ContainerRuntime>, Some(reach))))
}

#[cfg(not(feature = "docker"))]
async fn docker(_purpose: Purpose<'_>) -> Option<Adapter> {
    None
}

#[cfg(feature = "podman")]
async fn podman(purpose: Purpose<'_>) -> Option<Adapter> {
    let reach = |d: &bottle_podman::PodmanEndpoint| Reach {
        endpoint: d.uri.clone(),
        chosen_by: d.source.clone(),
        locality: podman_locality(&d.uri),
        rootless: d.rootless,
        applies_limits: None,
    };
    Some(match bottle_podman::PodmanRuntime::connect().await {
        Ok(rt) => {
            let mut found = reach(rt.discovered());
            if purpose.facts {
                found.applies_limits = rt.applies_limits().await.ok();
            }
            Ok((Arc::new(rt) as Arc<dyn ContainerRuntime>, Some(found)))
        }
        // What discovery would pick, without contacting anything, so doctor can say why.
        Err(e) => Err(Unusable::Failed(
            e.into(),
            bottle_podman::discover().ok().map(|d| reach(&d)),
        )),
    })
}

/// A Podman service's locality from its URL: a unix socket is local; `tcp://` is this host
/// when its address is loopback.
#[cfg(feature = "podman")]
fn podman_locality(uri: &str) -> &'static str {
    let Some(rest) = uri.strip_prefix("tcp://") else {
        return "local";
    };
    let host = rest.split('/').next().unwrap_or_default();
    let host = host
        .rsplit_once(':')
        .map_or(host, |(h, _)| h)
        .trim_start_matches('[')
        .trim_end_matches(']');
    let here = host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if here {
        "this-host"
    } else {
        "remote"
    }
}

#[cfg(not(feature = "podman"))]
async fn podman(_purpose: Purpose<'_>) -> Option<Adapter> {
    None
}

/// Connects to `engine` and asks for its identity, which proves it answers.
pub async fn connect(engine: Engine, purpose: Purpose<'_>) -> Result<Connected, Unusable> {
    let (runtime, reach) = connect_adapter(engine, purpose)
        .await
        .ok_or(Unusable::NotBuilt(engine))??;
    // Docker's adapter refuses another host before contacting it; Podman's discovery only
    // says where it connected, so it is refused here, having created nothing.
    if let Some(r) = reach.as_ref().filter(|r| r.locality == "remote") {
        if purpose.refuse_remote {
            return Err(Unusable::Remote(r.clone()));
        }
    }
    let info = match runtime.info().await {
        Ok(info) => info,
        Err(e) => return Err(Unusable::Failed(e.into(), reach)),
    };
    Ok(Connected {
        engine,
        runtime,
        info,
        reach,
    })
}

/// The engine to use: the one asked for (Docker when `--context` is given), or the first of
/// Docker and Podman that answers.
pub async fn select(global: &Global) -> Result<Connected, Failure> {
    let purpose = Purpose {
        context: global.context.as_deref(),
        refuse_remote: true,
        facts: false,
    };
    let asked = match (global.runtime, &global.context) {
        (Some(Engine::Podman), Some(name)) => {
            return Err(Failure::input(
                format!("--context {name}: a Docker context does not apply to --runtime podman"),
                "drop --context, or use --runtime docker",
            ))
        }
        // A context names a Docker endpoint: falling back to Podman would ignore it.
        (None, Some(_)) => Some(Engine::Docker),
        (asked, _) => asked,
    };
    let connected = match asked {
        Some(engine) => connect(engine, purpose)
            .await
            .map_err(Unusable::into_failure)?,
        None => auto(purpose).await?,
    };
    match &connected.reach {
        Some(reach) => info!(
            runtime = connected.engine.name(),
            version = %connected.info.version,
            endpoint = %connected.info.endpoint,
            chosen_by = %reach.chosen_by,
            locality = reach.locality,
            "using engine"
        ),
        None => info!(
            runtime = connected.engine.name(),
            version = %connected.info.version,
            endpoint = %connected.info.endpoint,
            "using engine"
        ),
    }
    Ok(connected)
}

async fn auto(purpose: Purpose<'_>) -> Result<Connected, Failure> {
    let mut tried = Vec::new();
    for engine in Engine::ALL {
        match connect(engine, purpose).await {
            Ok(connected) => return Ok(connected),
            Err(why) => {
                let line = match why {
                    Unusable::NotBuilt(_) => format!("{}: not built in", engine.name()),
                    Unusable::Failed(e, _) => format!("{}: {e}", engine.name()),
                    // The user's settings name that engine: a mistake there is theirs to fix,
                    // not a reason to use another engine.
                    other => return Err(other.into_failure()),
                };
                debug!(%line, "engine not usable");
                tried.push(line);
            }
        }
    }
    Err(Failure::unavailable(
        format!("no container engine answered ({})", tried.join("; ")),
        Hint::text("start Docker or Podman (`cargo xtask engines` does both), or point DOCKER_HOST / CONTAINER_HOST at a running engine; ")
            .bottle("doctor")
            .then(" says more"),
    ))
}
