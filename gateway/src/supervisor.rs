//! The gateway actor: the sweeper (passivation and timers).
//!
//! Wallet actors are not linked to it: a link costs two supervision events
//! per activation, more than one actor drains in a burst (see
//! `WalletActor::handle`). A wallet actor that fails reports itself, and
//! the runtime restarts it (`Runtime::restart`).

use crate::runtime::Runtime;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use std::sync::Arc;

#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct GatewayActor;

#[derive(Debug)]
pub(crate) enum GatewayMsg {
    /// Passivate idle wallets; tick wallets whose timers are due.
    Sweep,
}

impl Actor for GatewayActor {
    type Msg = GatewayMsg;
    type State = Arc<Runtime>;
    type Arguments = Arc<Runtime>;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        runtime: Arc<Runtime>,
    ) -> Result<Self::State, ActorProcessingErr> {
        myself.send_interval(runtime.config.sweep_every, || GatewayMsg::Sweep);
        Ok(runtime)
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        runtime: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            GatewayMsg::Sweep => {
                let started = std::time::Instant::now();
                // On a blocking-pool thread, not on this tokio worker: with
                // 10,000 running actors a sweep takes milliseconds, and on a
                // worker that was a stall for every request queued behind
                // it. On a thread of its own it shares the cores instead
                // (BENCHMARKS.md, "The sweep's lists kept, and the sweep off
                // the workers"). The gateway actor waits for it, so sweeps
                // never overlap.
                let sweeping = Arc::clone(runtime);
                if let Err(e) = tokio::task::spawn_blocking(move || sweeping.sweep()).await {
                    // A bug; the next sweep is still due (timers, passivation).
                    tracing::error!(%e, "a sweep failed");
                }
                metrics::histogram!("settle_sweep_seconds").record(started.elapsed().as_secs_f64());
            }
        }
        Ok(())
    }
}
