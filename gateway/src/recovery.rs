//! Recovery: the log, replayed into the engine, the directory and the
//! idempotency store, before the server says it is ready.
//!
//! Replay applies events with `Ledger::apply`, the code that applies them
//! live, and the ledger checks as it goes that every message consumed was
//! in flight: a log that does not describe a reachable state stops recovery
//! at the record that does not fit, named by its position.

use crate::directory::{Directory, DirectoryRecord};
use crate::funding::Funding;
use crate::http::idempotency::{IdempotencyStore, Restored, StoredAnswer};
use crate::journal::{self, Record};
use settle_engine::message::implied_in_flight;
use settle_engine::{Direction, EngineConfig, Ledger, StateDigest, WalletId, WalletState, digest};
use settle_snapshots::{Lsn, Recovery, ReplayError};
use std::collections::BTreeMap;

/// What replay rebuilt.
#[derive(Debug)]
pub struct Replayed {
    pub wallets: Vec<WalletState>,
    pub records: u64,
}

impl Replayed {
    /// The state's digest (wallets and the messages in flight between
    /// them), as `GET /v1/admin/digest` computes it on a live engine.
    /// Costs a serialisation of the whole state.
    pub fn digest(&self) -> Result<StateDigest, RecoveryError> {
        let by_id: BTreeMap<WalletId, &WalletState> =
            self.wallets.iter().map(|w| (w.id, w)).collect();
        let in_flight = implied_in_flight(&by_id);
        digest::digest(by_id.values().copied(), in_flight.iter())
            .map_err(|e| RecoveryError(format!("digest of the recovered state: {e}")))
    }
}

/// Why recovery stopped.
#[derive(Debug)]
pub struct RecoveryError(pub String);

impl std::fmt::Display for RecoveryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RecoveryError {}

/// Where replayed records go besides the ledger. `None`s skip them (the
/// offline tools only need the ledger).
#[derive(Debug, Default)]
pub struct Sinks<'a> {
    pub directory: Option<&'a Directory>,
    pub idempotency: Option<(&'a IdempotencyStore, i64)>,
    pub funding: Option<&'a Funding>,
}

/// Records decoded per hand-over between the two replay threads.
const BATCH: usize = 512;

/// Replays every record of the log from `from`.
///
/// Two threads, a pipeline: one reads, checks and decodes records (about
/// 40% of the work), the other applies them in order (the rest). Applying
/// stays strictly sequential, in log order, as the ledger's checks need.
pub fn replay(
    recovery: &Recovery,
    from: Lsn,
    config: &EngineConfig,
    sinks: &Sinks<'_>,
) -> Result<Replayed, RecoveryError> {
    let mut ledger = Ledger::new(config.clone());
    let mut records = 0u64;
    let (tx, rx) = crossbeam_channel::bounded::<Vec<(Lsn, Record)>>(64);
    let read = std::thread::scope(|scope| {
        let reader = scope.spawn(move || {
            let mut batch = Vec::with_capacity(BATCH);
            let result = recovery.replay(from, |lsn, bytes| {
                batch.push((lsn, journal::decode(bytes)?));
                if batch.len() == BATCH {
                    let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
                    // The applier stopped (a record did not apply): stop too.
                    tx.send(full)
                        .map_err(|_| journal::CodecError("replay stopped".to_owned()))?;
                }
                Ok::<(), journal::CodecError>(())
            });
            if !batch.is_empty() {
                let _ = tx.send(batch);
            }
            result
        });
        let mut applied: Result<(), RecoveryError> = Ok(());
        for batch in rx.iter() {
            for (lsn, record) in batch {
                records += 1;
                if let Err(e) = apply(&mut ledger, sinks, record) {
                    applied = Err(RecoveryError(format!(
                        "log record {lsn} does not apply: {e} (run `settle wal verify`)"
                    )));
                    break;
                }
            }
            if applied.is_err() {
                break;
            }
        }
        drop(rx);
        let read = reader
            .join()
            .map_err(|_| RecoveryError("the log reader failed".to_owned()));
        applied.and(read)
    })?;
    match read {
        Ok(()) => {}
        Err(ReplayError::Apply { lsn, source }) => {
            return Err(RecoveryError(format!(
                "log record {lsn} does not decode: {source} (run `settle wal verify`)"
            )));
        }
        Err(e) => return Err(RecoveryError(format!("reading the log: {e}"))),
    }
    let wallets: Vec<WalletState> = ledger.into_wallets().collect();
    if let Some(directory) = sinks.directory {
        index(directory, &wallets);
    }
    Ok(Replayed { wallets, records })
}

fn apply(ledger: &mut Ledger, sinks: &Sinks<'_>, record: Record) -> Result<(), String> {
    match record {
        Record::Events { wallet, events } => {
            for e in &events {
                if e.wallet() != wallet {
                    return Err(format!(
                        "an event of {} in a record of {wallet}",
                        e.wallet()
                    ));
                }
                ledger.apply(e).map_err(|e| e.to_string())?;
            }
            if let Some(f) = sinks.funding {
                f.replayed(ledger, wallet, &events);
            }
        }
        Record::Funding(r) => {
            if let Some(f) = sinks.funding {
                f.apply(&r);
            }
        }
        Record::Directory(r) => {
            if let Some(d) = sinks.directory {
                d.apply(&r);
            }
        }
        Record::Claim {
            client,
            key,
            fingerprint,
            at,
            ids,
        } => {
            if let Some((store, now)) = sinks.idempotency {
                store.restore(client, &key, fingerprint, at, now, Restored::Claim(ids));
            }
        }
        Record::Forget { client, key } => {
            if let Some((store, _)) = sinks.idempotency {
                store.forget(client, &key);
            }
        }
        Record::Answer {
            client,
            key,
            fingerprint,
            at,
            status,
            body,
        } => {
            if let Some((store, now)) = sinks.idempotency {
                let answer = StoredAnswer {
                    status,
                    body: body.into_bytes(),
                };
                store.restore(client, &key, fingerprint, at, now, Restored::Answer(answer));
            }
        }
    }
    Ok(())
}

/// The directory's indexes that the wallets themselves record: each
/// client's wallets (ids sort in creation order) and where each transaction
/// was created (not the inbound record of a transfer).
fn index(directory: &Directory, wallets: &[WalletState]) {
    for w in wallets {
        directory.apply(&DirectoryRecord::WalletOpened {
            wallet: w.id,
            client: w.spec.client,
        });
        for t in w.txns() {
            let inbound = t.direction == Some(Direction::In) && t.counterparty.is_some();
            if !inbound {
                directory.apply(&DirectoryRecord::TxnCreated {
                    txn: t.id,
                    wallet: w.id,
                });
            }
        }
    }
}
