//! The engine's configuration: its assets and its explicit limits.

use crate::asset::AssetRegistry;
use serde::{Deserialize, Serialize};

/// Explicit bounds, so that no client can grow the engine without end.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Limits {
    /// Items waiting in one (wallet, asset) FIFO queue; past it, `queue_full`.
    pub max_queue_depth: usize,
    /// Assets one wallet may hold.
    pub max_assets_per_wallet: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_queue_depth: 10_000,
            max_assets_per_wallet: 64,
        }
    }
}

#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub struct EngineConfig {
    pub assets: AssetRegistry,
    pub limits: Limits,
}
