//! Runtime selection: connects to the engine named by `--runtime`, or to the first that
//! answers (Docker, then Podman). Each adapter sits behind its cargo feature; this is the one
//! module that names the adapter crates.

use std::sync::Arc;

use bottle_core::runtime::EngineInfo;
use bottle_core::ContainerRuntime;
use tracing::{debug, info};

use crate::cli::Engine;
use crate::exit::Failure;
use crate::hint::Hint;

/// A connected engine that answered `info`.
#[derive(Debug, Clone)]
pub struct Connected {
    pub engine: Engine,
    pub runtime: Arc<dyn ContainerRuntime>,
    pub info: EngineInfo,
}

/// Why an engine could not be used.
#[derive(Debug)]
pub enum Unusable {
    /// This binary was built without the engine's adapter.
    NotBuilt(Engine),
    /// The adapter could not reach or talk to the engine.
    Failed(bottle_core::Error),
}

impl Unusable {
    pub fn into_failure(self) -> Failure {
        match self {
            Unusable::NotBuilt(engine) => not_built(engine),
            Unusable::Failed(e) => e.into(),
        }
    }
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

/// Connects to one engine with its adapter; `None` when the adapter is not built in.
async fn connect_adapter(engine: Engine) -> Option<bottle_core::Result<Arc<dyn ContainerRuntime>>> {
    match engine {
        Engine::Docker => docker().await,
        Engine::Podman => podman().await,
    }
}

#[cfg(feature = "docker")]
async fn docker() -> Option<bottle_core::Result<Arc<dyn ContainerRuntime>>> {
    Some(
        bottle_docker::DockerRuntime::connect()
            .await
            .map(|rt| Arc::new(rt) as Arc<dyn ContainerRuntime>)
            .map_err(bottle_core::Error::from),
    )
}

#[cfg(not(feature = "docker"))]
async fn docker() -> Option<bottle_core::Result<Arc<dyn ContainerRuntime>>> {
    None
}

#[cfg(feature = "podman")]
async fn podman() -> Option<bottle_core::Result<Arc<dyn ContainerRuntime>>> {
    Some(
        bottle_podman::PodmanRuntime::connect()
            .await
            .map(|rt| Arc::new(rt) as Arc<dyn ContainerRuntime>)
            .map_err(bottle_core::Error::from),
    )
}

#[cfg(not(feature = "podman"))]
async fn podman() -> Option<bottle_core::Result<Arc<dyn ContainerRuntime>>> {
    None
}

/// Connects to `engine` and asks for its identity, which proves it answers.
pub async fn connect(engine: Engine) -> Result<Connected, Unusable> {
    let runtime = connect_adapter(engine)
        .await
        .ok_or(Unusable::NotBuilt(engine))?
        .map_err(Unusable::Failed)?;
    let info = runtime
        .info()
        .await
        .map_err(|e| Unusable::Failed(e.into()))?;
    Ok(Connected {
        engine,
        runtime,
        info,
    })
}

/// The engine to use: the one asked for, or the first of Docker and Podman that answers.
pub async fn select(asked: Option<Engine>) -> Result<Connected, Failure> {
    let connected = match asked {
        Some(engine) => connect(engine).await.map_err(Unusable::into_failure)?,
        None => auto().await?,
    };
    info!(
        runtime = connected.engine.name(),
        version = %connected.info.version,
        endpoint = %connected.info.endpoint,
        "using engine"
    );
    Ok(connected)
}

async fn auto() -> Result<Connected, Failure> {
    let mut tried = Vec::new();
    for engine in Engine::ALL {
        match connect(engine).await {
            Ok(connected) => return Ok(connected),
            Err(why) => {
                let line = match &why {
                    Unusable::NotBuilt(_) => format!("{}: not built in", engine.name()),
                    Unusable::Failed(e) => format!("{}: {e}", engine.name()),
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
