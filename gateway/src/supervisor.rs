//! The gateway actor: supervisor of every wallet actor, and the sweeper.

use crate::runtime::Runtime;
use ractor::{Actor, ActorProcessingErr, ActorRef, SupervisionEvent};
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
                // Timed: a sweep runs on a tokio worker, so its length is
                // a stall for whatever waits behind it (BENCHMARKS.md).
                let started = std::time::Instant::now();
                runtime.sweep();
                metrics::histogram!("settle_sweep_seconds").record(started.elapsed().as_secs_f64());
            }
        }
        Ok(())
    }

    /// A wallet actor that fails is restarted, never left dead: the default
    /// (stop the supervisor too) would take every wallet down with one.
    async fn handle_supervisor_evt(
        &self,
        _myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        runtime: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match event {
            SupervisionEvent::ActorFailed(cell, error) => {
                runtime.restart(cell.get_id(), &error.to_string());
            }
            SupervisionEvent::ActorTerminated(cell, _, _) => runtime.forget(cell.get_id()),
            _ => {}
        }
        Ok(())
    }
}
