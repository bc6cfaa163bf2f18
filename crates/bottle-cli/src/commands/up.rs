//! `bottle up`: bring a bottle up and print the agent's endpoints.

use crate::cli::SpecArgs;
use crate::commands::Context;
use crate::exit::Failure;
use crate::json;
use crate::output;
use crate::progress::Spinner;
use crate::spec_input;

pub async fn run(ctx: &Context, args: &SpecArgs) -> Result<(), Failure> {
    let mut spec = spec_input::build(args)?;
    crate::commands::settle_loopback(&mut spec)?;
    let (lifecycle, engine) = ctx.lifecycle().await?;
    let spinner = Spinner::new(ctx.show_progress());
    // Ctrl-C removes what was created so far instead of leaving it for `gc`.
    let interrupt = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let bottle = lifecycle.up_until(&spec, &spinner, interrupt).await?;
    drop(spinner);
    let mut report =
        json::Endpoints::new(&bottle.endpoints, engine.engine.name(), &ctx.global.prefix);
    report.subnet = Some(bottle.plan.subnet.to_string());
    report.network = Some(bottle.plan.network_name.clone());
    report.container = Some(bottle.plan.container_name.clone());
    ctx.write(|out| output::endpoints(out, ctx.global.output, &report));
    Ok(())
}
