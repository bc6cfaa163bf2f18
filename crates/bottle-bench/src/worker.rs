//! What runs inside a worker process: one timed round of one contender, a scale run, or the
//! teardown of a bundle that ignores SIGTERM; each reports one JSON line on stdout.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use nix::sys::resource::{getrusage, UsageWho};
use serde::{Deserialize, Serialize};

use crate::contenders::{self, wait_ports, Call, Contend, Contender, Up};
use crate::engine::{Api, Engine, Kind, DEAF_IMAGE};
use crate::job::Job;

/// One round of one contender, as the worker measured it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Round {
    /// From the first step until the contender considers every port usable.
    pub up_ms: f64,
    /// From the first teardown step until the contender considers the bottle gone.
    pub down_ms: f64,
    /// Whether bottle's idle probe passed on every port at the moment the contender said
    /// usable (false: a daemon was not listening yet, only the engine's proxy was).
    pub ready_when_said: bool,
    /// Peak RSS of the worker process (KiB).
    pub self_rss_kib: u64,
    /// Peak RSS of the worker before the contender did anything (KiB).
    pub idle_rss_kib: u64,
    /// Largest peak RSS among the processes the contender ran (KiB), 0 when none.
    pub children_rss_kib: u64,
    /// Engine calls of `up` and of `down` with their times (ms), where the contender can tell.
    #[serde(default)]
    pub up_calls: Vec<(String, f64)>,
    #[serde(default)]
    pub down_calls: Vec<(String, f64)>,
    /// How much of `up` and of `down` (ms) some engine call was in flight.
    #[serde(default)]
    pub up_engine_ms: f64,
    #[serde(default)]
    pub down_engine_ms: f64,
}

/// How long at least one of `calls` was in flight (ms): the union of their intervals.
pub fn covered(calls: &[Call]) -> f64 {
    let mut spans: Vec<(f64, f64)> = calls.iter().map(|(_, s, d)| (*s, s + d)).collect();
    spans.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut total = 0.0;
    let mut current: Option<(f64, f64)> = None;
    for (s, e) in spans {
        current = match current {
            Some((cs, ce)) if s <= ce => Some((cs, ce.max(e))),
            Some((cs, ce)) => {
                total += ce - cs;
                Some((s, e))
            }
            None => Some((s, e)),
        };
    }
    total + current.map_or(0.0, |(s, e)| e - s)
}

/// Peak RSS (KiB) of this process or of its largest waited-for child.
pub fn max_rss_kib(who: UsageWho) -> u64 {
    getrusage(who)
        .map(|u| u64::try_from(u.max_rss()).unwrap_or(0))
        .unwrap_or(0)
}

/// Times one round: `up`, an untimed check that the daemons really answer, `down`, and an
/// untimed check that nothing is left.
pub async fn round(api: &Api, c: &mut dyn Contend, idle_rss_kib: u64) -> Result<Round, String> {
    c.calls();
    let t = Instant::now();
    let up = c.up().await?;
    let up_ms = ms(t.elapsed());
    let up_calls = c.calls();
    let ready_when_said = check_ready(&up).await;
    if !ready_when_said {
        // Untimed: every contender's teardown starts from daemons that answer.
        wait_ports(up.loopback, &up.ports, contenders::idle_probe).await?;
    }
    c.calls();
    let t = Instant::now();
    c.down().await?;
    let down_ms = ms(t.elapsed());
    let down_calls = c.calls();
    check_gone(api, &up).await?;
    let owned = |v: &[Call]| v.iter().map(|(k, _, d)| (k.to_string(), *d)).collect();
    Ok(Round {
        up_ms,
        down_ms,
        ready_when_said,
        self_rss_kib: max_rss_kib(UsageWho::RUSAGE_SELF),
        idle_rss_kib,
        children_rss_kib: max_rss_kib(UsageWho::RUSAGE_CHILDREN),
        up_calls: owned(&up_calls),
        down_calls: owned(&down_calls),
        up_engine_ms: covered(&up_calls),
        down_engine_ms: covered(&down_calls),
    })
}

/// Whether every port passes bottle's probe once, right now.
async fn check_ready(up: &Up) -> bool {
    let probes = up.ports.values().map(|p| {
        bottle_core::lifecycle::probe(
            std::net::SocketAddr::new(up.loopback.into(), *p),
            contenders::IDLE,
        )
    });
    futures_util::future::join_all(probes)
        .await
        .into_iter()
        .all(|ok| ok)
        && !up.ports.is_empty()
}

/// Fails when the bottle's container or network still exists.
pub async fn check_gone(api: &Api, up: &Up) -> Result<(), String> {
    for (kind, name) in [
        (Kind::Container, &up.container),
        (Kind::Network, &up.network),
    ] {
        if api.exists(kind, name).await? {
            return Err(format!("{kind:?} {name} is still there after down"));
        }
    }
    Ok(())
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Prepares one of the contenders this crate implements (all but testcontainers).
pub async fn prepare(
    contender: Contender,
    engine: Engine,
    slug: &str,
    slot: u8,
    bottle_bin: Option<&std::path::Path>,
) -> Result<Box<dyn Contend>, String> {
    let job = Job::new(slug, slot);
    Ok(match contender {
        Contender::Floor | Contender::FloorIdle => Box::new(contenders::Floor {
            api: Api::connect(engine).await?,
            job,
            idle: contender == Contender::FloorIdle,
        }),
        Contender::Library => {
            let timed = contenders::timed(contenders::connect_runtime(engine).await?);
            Box::new(contenders::Library {
                lifecycle: contenders::lifecycle(timed.clone()),
                spec: contenders::spec(slug),
                timed: Some(timed),
            })
        }
        Contender::Cli => Box::new(contenders::Cli {
            bin: bottle_bin
                .ok_or("the cli contender needs --bottle-bin")?
                .to_path_buf(),
            engine,
            slug: slug.to_string(),
        }),
        Contender::EngineCli => Box::new(contenders::EngineCli { engine, job }),
        Contender::Testcontainers => {
            return Err("testcontainers is run by the bench target itself".into())
        }
    })
}

/// A scale run's measurement.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Scale {
    pub n: usize,
    pub parallel: usize,
    /// Wall time until all N bottles were up.
    pub up_wall_ms: f64,
    /// Wall time until all N were gone.
    pub down_wall_ms: f64,
    /// The library's engine calls of the up phase and of the down phase, per operation.
    #[serde(default)]
    pub up_calls: Vec<OpStats>,
    #[serde(default)]
    pub down_calls: Vec<OpStats>,
}

/// Calls of one operation during a scale phase.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OpStats {
    pub op: String,
    pub count: usize,
    pub median_ms: f64,
    pub max_ms: f64,
    pub sum_ms: f64,
}

/// Groups calls by operation.
fn op_stats(calls: &[Call]) -> Vec<OpStats> {
    let mut by_op: std::collections::BTreeMap<&str, Vec<f64>> = Default::default();
    for (op, _, d) in calls {
        by_op.entry(op).or_default().push(*d);
    }
    by_op
        .into_iter()
        .map(|(op, ds)| {
            let s = crate::stats::summary(&ds).expect("at least one call");
            OpStats {
                op: op.to_string(),
                count: ds.len(),
                median_ms: s.median,
                max_ms: s.max,
                sum_ms: ds.iter().sum(),
            }
        })
        .collect()
}

/// Brings `n` bottles up with at most `parallel` at a time, then tears them all down the same
/// way. One lifecycle serves every bottle of the library contender, as in a long-lived
/// launcher.
pub async fn scale(
    contender: Contender,
    engine: Engine,
    n: usize,
    parallel: usize,
    bottle_bin: Option<&std::path::Path>,
) -> Result<Scale, String> {
    if n > 250 {
        return Err("scale runs at most 250 bottles (one /24 of 10.230.0.0/16 each)".into());
    }
    let api = Api::connect(engine).await?;
    let timed = match contender {
        Contender::Library => Some(contenders::timed(
            contenders::connect_runtime(engine).await?,
        )),
        _ => None,
    };
    let shared = timed.as_ref().map(|t| contenders::lifecycle(t.clone()));
    let mut bottles: Vec<Box<dyn Contend>> = Vec::with_capacity(n);
    for i in 0..n {
        let slug = format!("s{}-{i}", contender.slug());
        let slot = u8::try_from(i).map_err(|e| e.to_string())?;
        bottles.push(match &shared {
            Some(lifecycle) => Box::new(contenders::Library {
                lifecycle: lifecycle.clone(),
                spec: contenders::spec(&slug),
                timed: None,
            }),
            None => prepare(contender, engine, &slug, slot, bottle_bin).await?,
        });
    }
    let t = Instant::now();
    let ups: Vec<Result<Up, String>> = futures_util::stream::iter(bottles.iter_mut())
        .map(|b| b.up())
        .buffer_unordered(parallel)
        .collect()
        .await;
    let up_wall_ms = ms(t.elapsed());
    let up_calls = timed.as_ref().map(|t| t.hook().take()).unwrap_or_default();
    let failed_up = ups.iter().filter_map(|r| r.as_ref().err()).next().cloned();
    let t = Instant::now();
    let downs: Vec<Result<(), String>> = futures_util::stream::iter(bottles.iter_mut())
        .map(|b| b.down())
        .buffer_unordered(parallel)
        .collect()
        .await;
    let down_wall_ms = ms(t.elapsed());
    let down_calls = timed.as_ref().map(|t| t.hook().take()).unwrap_or_default();
    if let Some(e) = failed_up {
        return Err(format!("an up failed: {e}"));
    }
    if let Some(Err(e)) = downs.into_iter().find(Result::is_err) {
        return Err(format!("a down failed: {e}"));
    }
    for up in ups.into_iter().flatten() {
        check_gone(&api, &up).await?;
    }
    Ok(Scale {
        n,
        parallel,
        up_wall_ms,
        down_wall_ms,
        up_calls: op_stats(&up_calls),
        down_calls: op_stats(&down_calls),
    })
}

/// The teardown of a bundle whose PID 1 ignores SIGTERM.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Deaf {
    /// The bundle was still running 1 s after a SIGTERM: it ignores it.
    pub ignored_sigterm: bool,
    /// `Lifecycle::down` of it.
    pub down_ms: f64,
}

/// Brings up a bottle of [`DEAF_IMAGE`] with the library, proves that its PID 1 ignores SIGTERM,
/// then times `down`. The image declares no daemons and the lifecycle assumes none (an empty
/// default catalog), so `up` waits for no port: its PID 1 is `sleep`.
pub async fn deaf(engine: Engine, slug: &str) -> Result<Deaf, String> {
    let api = Api::connect(engine).await?;
    let mut config = contenders::config();
    config.catalog = bottle_core::Catalog {
        daemons: Vec::new(),
    };
    let lifecycle = bottle_core::Lifecycle::new(contenders::connect_runtime(engine).await?, config);
    let mut spec = bottle_core::BottleSpec::new(slug);
    spec.image = DEAF_IMAGE.to_string();
    let bottle = lifecycle
        .up(&spec, &bottle_core::lifecycle::NoProgress)
        .await
        .map_err(|e| e.to_string())?;
    let name = bottle.plan.container_name.clone();
    api.kill(&name, "SIGTERM").await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let ignored_sigterm = api.running(&name).await?;
    let t = Instant::now();
    lifecycle
        .down(slug, &bottle_core::lifecycle::NoProgress)
        .await
        .map_err(|e| e.to_string())?;
    let down_ms = ms(t.elapsed());
    check_gone(
        &api,
        &Up {
            loopback: bottle.plan.loopback,
            ports: Default::default(),
            container: name,
            network: bottle.plan.network_name,
        },
    )
    .await?;
    Ok(Deaf {
        ignored_sigterm,
        down_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlapping_calls_count_once() {
        let calls = [("a", 0.0, 10.0), ("b", 5.0, 10.0), ("c", 20.0, 5.0)];
        assert_eq!(covered(&calls), 20.0);
        assert_eq!(covered(&[]), 0.0);
    }
}
