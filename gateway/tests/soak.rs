//! 10,000 wallets and 1,000,000 random operations from many concurrent
//! tasks, with wallet actors made to panic along the way and wallets
//! passivating and waking all the time. Checks: per-wallet FIFO order (on
//! every committed event), conservation and every invariant at consistent
//! cuts taken while the load runs and at the end, every acknowledged
//! transaction still there with its acknowledged status or a later one.
//!
//! `SETTLE_SOAK_OPS` changes the number of operations (default 1,000,000).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::float_arithmetic)]

mod common;
use common::*;
use settle_engine::actor::{SystemClock, WalletMsg};
use settle_engine::{Op, TxnId, TxnKind, TxnStatus, WalletId};
use settle_gateway::incoming::Incoming;
use settle_gateway::{Gateway, GatewayConfig, GatewayError};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const WALLETS: u64 = 10_000;
const TASKS: u64 = 32;

fn ops_wanted() -> u64 {
    std::env::var("SETTLE_SOAK_OPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000)
}

/// A statuses' order: an acknowledged status may only move forward.
fn may_follow(acked: TxnStatus, now: TxnStatus, kind: TxnKind) -> bool {
    use TxnStatus::*;
    acked == now
        || matches!(
            (acked, now),
            (AwaitingFunds, Settled | Cancelled | Expired | Returned)
                | (Held, Captured | Released)
                | (Pending, Settled | Rejected)
        )
        || (kind == TxnKind::Transfer && acked == Settled && now == Returned)
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn wallet(&mut self) -> WalletId {
        wal(u128::from(self.next() % WALLETS) + 1)
    }
}

/// Runs one command, retrying (same transaction id) while the wallet is
/// restarting or busy: a retry of an applied command is answered, not redone.
async fn run(g: &Gateway, op: Op) -> Result<settle_engine::actor::Answer, GatewayError> {
    loop {
        match g.execute(op.clone()).await {
            Err(GatewayError::Unavailable(_) | GatewayError::Overloaded { .. }) => {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            other => return other,
        }
    }
}

#[test]
fn ten_thousand_wallets_a_million_operations() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(soak());
}

async fn soak() {
    quiet_injected_panics();
    let fifo = Arc::new(FifoChecker::default());
    let config = GatewayConfig {
        idle_after: Duration::from_millis(400),
        sweep_every: Duration::from_millis(50),
        ..GatewayConfig::default()
    };
    let g = Gateway::start_with(config, Arc::new(SystemClock), Some(fifo.clone()))
        .await
        .unwrap();
    for n in 1..=u128::from(WALLETS) {
        g.open_wallet(open_op(wal(n))).await.unwrap();
        run(&g, credit(wal(n), txn(n << 64), "1000")).await.unwrap();
    }

    let total = ops_wanted();
    let per_task = total / TASKS;
    let started = Instant::now();
    let running = Arc::new(AtomicBool::new(true));

    // Faults: every 150 ms a random wallet actor panics.
    let chaos = {
        let (g, running) = (g.clone(), running.clone());
        tokio::spawn(async move {
            let mut rng = Rng(0xC4A0_5EED);
            let mut injected = 0u64;
            while running.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(150)).await;
                if g.send_raw(rng.wallet(), WalletMsg::Panic).is_ok() {
                    injected += 1;
                }
            }
            injected
        })
    };
    // Consistent cuts while the load runs.
    let auditor = {
        let (g, running) = (g.clone(), running.clone());
        tokio::spawn(async move {
            let mut cuts = 0u32;
            while running.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(1_000)).await;
                g.with_cut(|cut| cut.check_invariants())
                    .unwrap()
                    .unwrap_or_else(|e| panic!("cut {cuts}: {e}"));
                cuts += 1;
            }
            cuts
        })
    };

    let mut workers = Vec::new();
    for task in 0..TASKS {
        let g = g.clone();
        workers.push(tokio::spawn(async move {
            let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ ((task + 1) * 0x1000_0001));
            let mut acked: Vec<(WalletId, TxnId, TxnStatus)> =
                Vec::with_capacity(per_task as usize);
            let mut holds: Vec<(WalletId, TxnId)> = Vec::new();
            for k in 0..per_task {
                let id = txn((u128::from(task + 1) << 96) | u128::from(k));
                let w = rng.wallet();
                let amount = format!("{}.{:02}", rng.next() % 20, rng.next() % 100);
                let amount = if amount == "0.00" {
                    "0.01".to_owned()
                } else {
                    amount
                };
                let dice = rng.next() % 100;
                let op = match dice {
                    0..=49 => {
                        let to = rng.wallet();
                        if to == w {
                            continue;
                        }
                        transfer(w, to, id, &amount)
                    }
                    50..=64 => credit(w, id, &amount),
                    65..=79 => debit(w, id, &amount),
                    80..=91 => reserve(w, id, &amount, None),
                    _ => match holds.pop() {
                        Some((hw, ht)) if dice.is_multiple_of(2) => Op::Capture {
                            wallet: hw,
                            txn: ht,
                            amount: None,
                        },
                        Some((hw, ht)) => Op::Release {
                            wallet: hw,
                            txn: ht,
                        },
                        None => credit(w, id, &amount),
                    },
                };
                let target = op.wallet();
                match run(&g, op.clone()).await {
                    Ok(answer) => {
                        if let Some(t) = answer.txn {
                            if matches!(op, Op::Reserve { .. }) {
                                holds.push((target, t.id));
                            }
                            acked.push((target, t.id, t.status));
                        }
                    }
                    Err(GatewayError::Rejected(r)) => {
                        // Refusals the mix expects: a hold that does not fit.
                        assert!(
                            matches!(r.code(), "insufficient_funds" | "invalid_state"),
                            "unexpected refusal of {op:?}: {r}"
                        );
                    }
                    Err(e) => panic!("{op:?}: {e}"),
                }
            }
            acked
        }));
    }
    let mut acked = Vec::new();
    for w in workers {
        acked.extend(w.await.unwrap());
    }
    let elapsed = started.elapsed();
    running.store(false, Ordering::Relaxed);
    let injected = chaos.await.unwrap();
    let cuts = auditor.await.unwrap();
    // Some injected panics land in a mailbox that dies first (the wallet was
    // passivating, or had just panicked): at least one must have restarted.
    wait_restarts(&g, 1).await;
    quiesce(&g).await;

    let cut = g.cut().unwrap();
    cut.check_invariants().unwrap();
    let violations = fifo.violations.lock().clone();
    assert!(
        violations.is_empty(),
        "FIFO broken: {:?}",
        &violations[..violations.len().min(5)]
    );
    for (wallet, id, status) in &acked {
        let t = cut.wallets[wallet]
            .txn(*id)
            .unwrap_or_else(|| panic!("acknowledged {id} lost"));
        assert!(
            may_follow(*status, t.status, t.kind),
            "{id}: acknowledged {status:?}, now {:?}",
            t.status
        );
    }
    check_incoming(&g).await;
    let stats = g.stats();
    eprintln!(
        "{total} ops in {elapsed:?} ({:.0}/s); {} acknowledged; {} events; {injected} panics, {} restarts; {cuts} cuts; {} wallets active at the end",
        total as f64 / elapsed.as_secs_f64(),
        acked.len(),
        fifo.events.load(Ordering::Relaxed),
        stats.restarts,
        stats.active,
    );
    assert!(acked.len() as u64 > total / 2);
    assert!(injected > 0 && cuts >= 2, "{injected} panics, {cuts} cuts");
    assert!(stats.restarts <= injected);
    g.shutdown();
}

/// The transfers toward each wallet that have not reached it, as the
/// commits kept them (through the soak's panics, restarts and
/// passivations, then twenty transfers left queued, half of them
/// cancelled), are those the wallets' final records imply.
async fn check_incoming(g: &Gateway) {
    for i in 0..20u128 {
        let (from, to) = (wal(i + 1), wal(i + 2));
        let id = txn((99 << 96) | i);
        let queued = run(g, transfer(from, to, id, "999999.00")).await.unwrap();
        assert_eq!(queued.txn.map(|t| t.status), Some(TxnStatus::AwaitingFunds));
        if i % 2 == 0 {
            run(
                g,
                Op::Cancel {
                    wallet: from,
                    txn: id,
                },
            )
            .await
            .unwrap();
        }
    }
    quiesce(g).await;
    let cut = g.cut().unwrap();
    let mut implied = Incoming::default();
    for (id, w) in &cut.wallets {
        for t in w.txns() {
            implied.seed(*id, t);
        }
    }
    let (entries, waiting) = implied.len();
    // The queues' depth, kept live from the events, as the records and
    // the queues themselves say.
    let in_queues: u64 = cut
        .wallets
        .values()
        .flat_map(|w| w.books())
        .map(|b| b.queue().len() as u64)
        .sum();
    assert!(in_queues >= 10, "{in_queues} queued");
    assert_eq!(implied.queued(), in_queues);
    assert_eq!(g.stats().queued, in_queues);
    assert!(
        entries >= 20 && waiting >= 10,
        "{entries} entries, {waiting} waiting"
    );
    let mut listed = 0;
    for id in cut.wallets.keys() {
        let live = g.incoming(*id);
        listed += live.len();
        assert_eq!(live, implied.toward(*id), "the transfers toward {id}");
    }
    assert_eq!(listed, entries);
}
