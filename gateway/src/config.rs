//! The gateway's limits and timings.

use settle_engine::EngineConfig;
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct GatewayConfig {
    pub engine: EngineConfig,
    /// Client messages waiting for one wallet; past it, `queue_full`.
    pub max_inflight_per_wallet: u32,
    /// Messages waiting across all wallets; past it, `unavailable`.
    pub max_inflight_total: usize,
    /// A wallet actor idle this long is passivated.
    pub idle_after: Duration,
    /// At most this many wallet actors run at once (one costs about 12 KB
    /// with its state, memory the allocator keeps for reuse once it stops):
    /// past it, each sweep passivates the least recently used before they
    /// are idle, and past an eighth more, actors passivate as soon as they
    /// have nothing waiting, so a burst over many wallets cannot exhaust
    /// memory between sweeps. 20,000: with 1,000,000 wallets the node then
    /// rests at 1.6-1.7 GB; 100,000 kept 2.4 GB (BENCHMARKS.md).
    pub max_active: usize,
    /// How often the gateway looks for idle wallets and due timers.
    pub sweep_every: Duration,
    /// At most this many idle wallets are passivated by one sweep; the rest
    /// wait for the next ones. Passivating is an actor message, a packing
    /// of the wallet and an actor stop each: 50,000 wallets going idle
    /// together (after an import, after a load test's set-up) passivated in
    /// one sweep stalled requests for 150-360 ms (BENCHMARKS.md, "Idle
    /// wallets passivated a few at a time"). 500 per 250 ms sweep is 2,000
    /// a second, a few milliseconds of work per sweep.
    pub passivate_per_sweep: usize,
    /// Registry shards (lock striping).
    pub shards: usize,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            engine: EngineConfig::default(),
            max_inflight_per_wallet: 1_024,
            max_inflight_total: 262_144,
            idle_after: Duration::from_secs(30),
            max_active: 20_000,
            sweep_every: Duration::from_millis(250),
            passivate_per_sweep: 500,
            shards: 64,
        }
    }
}
