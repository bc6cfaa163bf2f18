//! `bottle plan`: what `up` would create, without creating anything.

use bottle_core::plan::PlannedEnv;

use crate::cli::{Output, SpecArgs};
use crate::commands::Context;
use crate::exit::Failure;
use crate::json;
use crate::output::{self, table};
use crate::spec_input;

pub async fn run(ctx: &Context, args: &SpecArgs) -> Result<(), Failure> {
    let mut spec = spec_input::build(args)?;
    crate::commands::settle_loopback(&mut spec)?;
    let (lifecycle, _) = ctx.lifecycle().await?;
    let plan = lifecycle.plan(&spec).await?;
    if ctx.global.output == Output::Json {
        ctx.emit_json(&json::Plan::from(&plan));
        return Ok(());
    }
    let mut s = format!(
        "bottle {} would create:\n  network   {} (subnet {}, gateway {})\n  bundle    {} (image {}, ip {})\n  loopback  {}\n  limits    memory {}, pids {}\n\n",
        plan.slug,
        plan.network_name,
        plan.subnet,
        plan.gateway,
        plan.container_name,
        plan.image,
        plan.bundle_ip,
        plan.loopback,
        plan.limits.memory_bytes.map_or_else(|| "-".into(), output::size),
        plan.limits.pids.unwrap_or_default(),
    );
    let published: Vec<u16> = plan.publish.iter().map(|p| p.container_port).collect();
    let daemons: Vec<Vec<String>> = plan
        .daemons
        .iter()
        .map(|d| {
            let on = if published.contains(&d.port) {
                format!("{}:<random>", plan.loopback)
            } else {
                "internal".into()
            };
            vec![d.name.clone(), d.port.to_string(), on]
        })
        .collect();
    s.push_str(&table(&["DAEMON", "PORT", "PUBLISHED ON"], &daemons));
    s.push('\n');
    let env: Vec<Vec<String>> = plan
        .env
        .iter()
        .map(|e| match e {
            PlannedEnv::Value { key, value } => vec![key.clone(), value.clone()],
            PlannedEnv::Inherit { key } => {
                vec![key.clone(), "<from the launcher's environment>".into()]
            }
        })
        .collect();
    s.push_str(&table(&["BUNDLE VARIABLE", "VALUE"], &env));
    for m in &plan.mounts {
        s.push_str(&format!(
            "mount {} -> {}{}\n",
            m.host_path.display(),
            m.container_path.display(),
            if m.read_only { " (read-only)" } else { "" }
        ));
    }
    ctx.emit(&s);
    Ok(())
}
