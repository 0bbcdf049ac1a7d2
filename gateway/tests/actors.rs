//! Wallet actors under the gateway: passivation and re-activation, timers,
//! supervision after a panic, backpressure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;
use settle_engine::actor::WalletMsg;
use settle_engine::{Done, Reject, Timestamp, TxnStatus, WalletState};
use settle_gateway::{GatewayConfig, GatewayError};
use std::time::Duration;

fn config() -> GatewayConfig {
    GatewayConfig {
        idle_after: Duration::from_secs(30),
        // Sweeps are driven by the tests (`sweep_now`) on a manual clock.
        sweep_every: Duration::from_secs(3600),
        ..GatewayConfig::default()
    }
}

fn digest_of(w: &WalletState) -> settle_engine::StateDigest {
    settle_engine::digest::digest([w], []).unwrap()
}

/// Lets the actors handle what was sent to them.
async fn settle_down() {
    tokio::time::sleep(Duration::from_millis(30)).await;
}

/// Holds every wallet's state for 300 ms (a cut, on a thread of its own),
/// so that their actors are stuck and commands sent meanwhile wait.
async fn stuck_for_300_ms(
    g: &settle_gateway::Gateway,
) -> std::thread::JoinHandle<Result<(), GatewayError>> {
    let g = g.clone();
    let blocker =
        std::thread::spawn(move || g.with_cut(|_| std::thread::sleep(Duration::from_millis(300))));
    tokio::time::sleep(Duration::from_millis(50)).await;
    blocker
}

/// A gateway with 35 wallets, each credited 1.00 (so each has an actor).
async fn thirty_five_funded(
    cfg: GatewayConfig,
) -> (
    settle_gateway::Gateway,
    std::sync::Arc<settle_engine::actor::ManualClock>,
    Vec<settle_engine::WalletId>,
) {
    let (g, clock, _) = gateway(cfg).await;
    let wallets: Vec<_> = (1..=35).map(wal).collect();
    for (n, w) in (1..).zip(&wallets) {
        g.open_wallet(open_op(*w)).await.unwrap();
        g.execute(credit(*w, txn(n), "1")).await.unwrap();
    }
    (g, clock, wallets)
}

/// Many wallets going idle together are passivated a share per sweep, not
/// all at once (a burst of thousands of actor stops stalls requests).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sweep_passivates_at_most_its_share_of_idle_wallets() {
    let cfg = GatewayConfig {
        passivate_per_sweep: 10,
        ..config()
    };
    let (g, clock, wallets) = thirty_five_funded(cfg).await;
    let active = || wallets.iter().filter(|w| g.is_active(**w)).count();
    assert_eq!(active(), 35);
    clock.advance(31_000);
    for left in [25, 15, 5, 0] {
        g.sweep_now();
        eventually("a sweep's share is passivated", || active() == left).await;
        settle_down().await;
        assert_eq!(active(), left, "one sweep passivates at most 10");
    }
    // Passivated wallets answer as before (and come back to life).
    g.execute(credit(wal(7), txn(100), "1")).await.unwrap();
    assert!(g.is_active(wal(7)));
}

/// The share per sweep never lets running actors pass `max_active`:
/// wallets that went idle faster than the share passivates them still hold
/// memory, and the least recently used of them go at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_wallets_past_the_share_still_count_against_max_active() {
    let cfg = GatewayConfig {
        passivate_per_sweep: 2,
        max_active: 10,
        ..config()
    };
    let (g, clock, _) = thirty_five_funded(cfg).await;
    // Between sweeps too: past max_active and an eighth (at least one),
    // an actor with nothing waiting stops at once.
    eventually("at most max_active and an eighth", || {
        g.stats().active <= 11
    })
    .await;
    assert!(
        g.stats().active >= 10,
        "no sweep yet: no reason to stop more"
    );
    clock.advance(31_000);
    g.sweep_now();
    eventually("down to max_active after one sweep", || {
        g.stats().active <= 10
    })
    .await;
    // The rest go a share per sweep, as before.
    for _ in 0..5 {
        g.sweep_now();
        settle_down().await;
    }
    eventually("all idle wallets passivated", || g.stats().active == 0).await;
    // Evicted wallets answer as before.
    g.execute(credit(wal(3), txn(100), "1")).await.unwrap();
    assert_eq!(
        g.read(wal(3), |w| w.balance(usd()).unwrap().cash).unwrap(),
        d("2.00")
    );
    g.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passivated_wallets_keep_their_queue_holds_and_timers() {
    let (g, clock, fifo) = gateway(config()).await;
    let (a, b) = (wal(1), wal(2));
    for w in [a, b] {
        g.open_wallet(open_op(w)).await.unwrap();
    }
    g.execute(credit(a, txn(1), "30")).await.unwrap();
    let hold_expires = Timestamp::from_millis(clock.now_ms() + 120_000);
    g.execute(reserve(a, txn(2), "5", Some(hold_expires)))
        .await
        .unwrap();
    assert_eq!(
        g.execute(debit(a, txn(3), "40"))
            .await
            .unwrap()
            .txn
            .unwrap()
            .status,
        TxnStatus::AwaitingFunds
    );
    assert_eq!(
        g.execute(debit(a, txn(4), "10"))
            .await
            .unwrap()
            .txn
            .unwrap()
            .status,
        TxnStatus::AwaitingFunds
    );
    assert!(g.is_active(a));
    let before = g.read(a, digest_of).unwrap();

    // Idle past `idle_after`: the sweep passivates it.
    clock.advance(31_000);
    g.sweep_now();
    eventually("an idle wallet is passivated", || !g.is_active(a)).await;
    assert_eq!(
        g.read(a, digest_of).unwrap(),
        before,
        "passivation changes nothing"
    );

    // The next message re-activates it, with its queue intact: a credit of
    // 15 settles the 40 (30 - 5 held + 15 = 40) and the 10 keeps waiting.
    g.execute(credit(a, txn(5), "15")).await.unwrap();
    assert!(g.is_active(a));
    let (s3, s4, held) = g
        .read(a, |w| {
            (
                w.txn(txn(3)).unwrap().status,
                w.txn(txn(4)).unwrap().status,
                w.balance(usd()).unwrap().reserved,
            )
        })
        .unwrap();
    assert_eq!(
        (s3, s4, held),
        (TxnStatus::Settled, TxnStatus::AwaitingFunds, d("5.00"))
    );

    // Passivate again; the hold's timer still fires: the sweep wakes the
    // wallet when it is due, and the released 5 pays the waiting 10... not
    // yet (0 + 5 < 10): it stays queued, the hold is released.
    clock.advance(31_000);
    g.sweep_now();
    eventually("passivated again", || !g.is_active(a)).await;
    clock.advance(120_000);
    g.sweep_now();
    eventually("the hold expired while passivated", || {
        g.read(a, |w| w.txn(txn(2)).unwrap().status).unwrap() == TxnStatus::Released
    })
    .await;
    let (hold, reserved) = g
        .read(a, |w| {
            (
                w.txn(txn(2)).unwrap().status,
                w.balance(usd()).unwrap().reserved,
            )
        })
        .unwrap();
    assert_eq!(
        (hold, reserved),
        (TxnStatus::Released, d("0.00")),
        "expired while passivated"
    );
    g.cut().unwrap().check_invariants().unwrap();
    assert!(fifo.violations.lock().is_empty());
    g.shutdown();
}

/// A wallet with a timer is filed once for the sweep however often it is
/// passivated and woken, and is still woken when its timer comes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wallet_passivated_again_and_again_is_filed_once_for_its_timer() {
    let (g, clock, _) = gateway(config()).await;
    let a = wal(1);
    g.open_wallet(open_op(a)).await.unwrap();
    g.execute(credit(a, txn(1), "10")).await.unwrap();
    let expires = Timestamp::from_millis(clock.now_ms() + 3_600_000);
    g.execute(reserve(a, txn(2), "4", Some(expires)))
        .await
        .unwrap();
    for n in 3..23u128 {
        clock.advance(31_000);
        g.sweep_now();
        eventually("passivated", || !g.is_active(a)).await;
        assert_eq!(g.stats().filed_timers, 1, "filed once, at rest {n}");
        g.execute(credit(a, txn(n), "1")).await.unwrap();
    }
    clock.advance(3_600_000);
    g.sweep_now();
    eventually("the hold expired", || {
        g.read(a, |w| w.txn(txn(2)).unwrap().status).unwrap() == TxnStatus::Released
    })
    .await;
    g.sweep_now();
    eventually("nothing left filed", || g.stats().filed_timers == 0).await;
    g.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_max_active_the_least_recently_used_are_passivated_before_idle() {
    let cfg = GatewayConfig {
        max_active: 2,
        ..config()
    };
    let (g, clock, _) = gateway(cfg).await;
    for n in 1..=5 {
        g.open_wallet(open_op(wal(n))).await.unwrap();
    }
    // Distinct "last used" instants (the sweep sets the coarse clock),
    // none of them idle; sweeps along the way already evict the oldest.
    for n in 1..=5u128 {
        clock.advance(10);
        g.sweep_now();
        eventually("evicted down to max_active", || g.stats().active <= 2).await;
        g.execute(credit(wal(n), txn(n), "1")).await.unwrap();
        assert!(
            g.stats().active <= 3,
            "at most max_active + the one just used"
        );
    }
    g.sweep_now();
    eventually("only max_active actors keep running", || {
        g.stats().active == 2
    })
    .await;
    assert!(
        g.is_active(wal(4)) && g.is_active(wal(5)),
        "the most recently used stay"
    );
    // An evicted wallet wakes on its next message, state intact.
    g.execute(credit(wal(1), txn(10), "2")).await.unwrap();
    assert_eq!(
        g.read(wal(1), |w| w.balance(usd()).unwrap().cash).unwrap(),
        d("3.00")
    );
    g.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_to_a_passivated_wallet_activates_it() {
    let (g, clock, _) = gateway(config()).await;
    let (a, b) = (wal(1), wal(2));
    for w in [a, b] {
        g.open_wallet(open_op(w)).await.unwrap();
    }
    g.execute(credit(b, txn(1), "1")).await.unwrap();
    clock.advance(31_000);
    g.sweep_now();
    eventually("b is passivated", || !g.is_active(b)).await;
    g.execute(credit(a, txn(2), "10")).await.unwrap();
    g.execute(transfer(a, b, txn(3), "4")).await.unwrap();
    quiesce(&g).await;
    assert_eq!(
        g.read(b, |w| w.balance(usd()).unwrap().cash).unwrap(),
        d("5.00")
    );
    assert_eq!(
        g.read(a, |w| w.awaiting_receipt().count()).unwrap(),
        0,
        "receipt came back"
    );
    g.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_wallet_actor_is_restarted_and_loses_nothing() {
    quiet_injected_panics();
    let (g, _clock, fifo) = gateway(config()).await;
    let (a, b) = (wal(1), wal(2));
    for w in [a, b] {
        g.open_wallet(open_op(w)).await.unwrap();
    }
    g.execute(credit(a, txn(1), "100")).await.unwrap();
    g.execute(debit(a, txn(2), "500")).await.unwrap(); // queued
    let before = g.read(a, digest_of).unwrap();

    g.send_raw(a, WalletMsg::Panic).unwrap();
    wait_restarts(&g, 1).await;
    assert_eq!(
        g.read(a, digest_of).unwrap(),
        before,
        "the restart keeps the state"
    );
    // The restarted actor serves commands, with its queue intact.
    g.execute(credit(a, txn(3), "400")).await.unwrap();
    assert_eq!(
        g.read(a, |w| w.txn(txn(2)).unwrap().status).unwrap(),
        TxnStatus::Settled
    );

    // A panic in the middle of a command: its events stay applied (each is
    // atomic) and the restart settles what fits.
    g.send_raw(a, WalletMsg::PanicAfter(Box::new(credit(a, txn(4), "7"))))
        .unwrap();
    wait_restarts(&g, 2).await;
    settle_down().await;
    assert_eq!(
        g.read(a, |w| w.balance(usd()).unwrap().cash).unwrap(),
        d("7.00")
    );
    g.execute(transfer(a, b, txn(5), "7")).await.unwrap();
    quiesce(&g).await;
    assert_eq!(
        g.read(b, |w| w.balance(usd()).unwrap().cash).unwrap(),
        d("7.00")
    );
    g.cut().unwrap().check_invariants().unwrap();
    assert!(fifo.violations.lock().is_empty());
    g.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_lost_with_a_dead_mailbox_is_sent_again() {
    quiet_injected_panics();
    let (g, clock, _) = gateway(config()).await;
    let (a, b) = (wal(1), wal(2));
    for w in [a, b] {
        g.open_wallet(open_op(w)).await.unwrap();
    }
    g.execute(credit(a, txn(1), "10")).await.unwrap();
    g.execute(credit(b, txn(2), "1")).await.unwrap();
    // B dies with the delivery in its mailbox (the panic is queued first).
    g.send_raw(b, WalletMsg::Panic).unwrap();
    g.execute(transfer(a, b, txn(3), "10")).await.unwrap();
    wait_restarts(&g, 1).await;
    settle_down().await;
    // Money left A and is in flight until A sends it again.
    clock.advance(settle_engine::actor::RESEND_AFTER_MS + 1);
    g.sweep_now();
    quiesce(&g).await;
    let cut = g.cut().unwrap();
    cut.check_invariants().unwrap();
    assert_eq!(cut.wallets[&b].balance(usd()).unwrap().cash, d("11.00"));
    assert_eq!(cut.wallets[&a].balance(usd()).unwrap().cash, d("0.00"));
    g.shutdown();
}

/// The admin routes' one-pass survey (each passivated wallet decoded in
/// turn, dropped after) finds what the full cut finds: the same audit,
/// invariants, digest and messages in flight, with wallets passivated and
/// receipts still in flight to their sources.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_survey_agrees_with_the_full_cut() {
    // Past `max_active` an actor passivates as soon as it has nothing to
    // do, so nearly every wallet is packed; no sweep runs on its own here,
    // so the receipts of these transfers stay in flight, left in their
    // sources' inboxes.
    let cfg = settle_gateway::GatewayConfig {
        max_active: 1,
        ..config()
    };
    let (g, _, wallets) = thirty_five_funded(cfg).await;
    for k in 0..10 {
        g.execute(transfer(
            wallets[k],
            wallets[k + 10],
            txn(100 + k as u128),
            "0.25",
        ))
        .await
        .unwrap();
    }
    settle_down().await;
    let stats = g.stats();
    assert!(stats.active <= 2, "{} wallets active", stats.active);
    let survey = g.survey(true).unwrap();
    let cut = g.cut().unwrap();
    assert!(survey.in_flight > 0, "no message in flight to check");
    assert_eq!(survey.in_flight, cut.in_flight.len());
    assert_eq!(survey.wallets, 35);
    assert_eq!(survey.audit, cut.audit());
    assert_eq!(survey.invariants, cut.check_invariants());
    assert_eq!(survey.invariants, Ok(()));
    assert_eq!(survey.digest, Some(cut.digest().unwrap()));
    assert_eq!(g.survey(false).unwrap().digest, None);
    g.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crossing_transfers_complete() {
    let (g, _, fifo) = gateway(config()).await;
    let (a, b) = (wal(1), wal(2));
    for w in [a, b] {
        g.open_wallet(open_op(w)).await.unwrap();
        g.execute(credit(w, txn(w.ulid().0), "1000")).await.unwrap();
    }
    let mut tasks = Vec::new();
    for k in 0..200u128 {
        let g = g.clone();
        tasks.push(tokio::spawn(async move {
            let (from, to) = if k % 2 == 0 { (a, b) } else { (b, a) };
            g.execute(transfer(from, to, txn(100 + k), "3")).await
        }));
    }
    for t in tasks {
        assert_eq!(
            t.await.unwrap().unwrap().txn.unwrap().status,
            TxnStatus::Settled
        );
    }
    quiesce(&g).await;
    let cut = g.cut().unwrap();
    cut.check_invariants().unwrap();
    assert_eq!(cut.wallets[&a].balance(usd()).unwrap().cash, d("1000.00"));
    assert_eq!(cut.wallets[&b].balance(usd()).unwrap().cash, d("1000.00"));
    assert!(fifo.violations.lock().is_empty());
    g.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_past_the_limits_are_refused_not_queued_without_end() {
    let cfg = GatewayConfig {
        max_inflight_per_wallet: 4,
        max_inflight_total: 1_000_000,
        ..config()
    };
    let (g, _, _) = gateway(cfg).await;
    let a = wal(1);
    g.open_wallet(open_op(a)).await.unwrap();
    // Many commands at once at one wallet while its actor is stuck (a cut
    // holds every wallet's state): past 4 waiting, they are refused with
    // `queue_full`; the rest succeed; nothing is lost or counted twice.
    let blocker = stuck_for_300_ms(&g).await;
    let mut tasks = Vec::new();
    for k in 0..2_000u128 {
        let g = g.clone();
        tasks.push(tokio::spawn(async move {
            g.execute(credit(a, txn(10 + k), "1")).await
        }));
    }
    let (mut ok, mut full) = (0u32, 0u32);
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(GatewayError::Overloaded { wallet }) => {
                assert_eq!(wallet, a);
                full += 1;
            }
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    blocker.join().unwrap().unwrap();
    assert_eq!(
        (ok, full),
        (4, 1_996),
        "exactly the limit waits; the rest is refused"
    );
    assert_eq!(
        g.read(a, |w| w.balance(usd()).unwrap().cash).unwrap(),
        settle_engine::Decimal::from(ok)
    );
    assert_eq!(
        g.stats().inflight,
        0,
        "every admitted command was counted out"
    );

    let cfg = GatewayConfig {
        max_inflight_total: 0,
        ..config()
    };
    let (g2, _, _) = gateway(cfg).await;
    g2.open_wallet(open_op(a)).await.unwrap();
    assert!(matches!(
        g2.execute(credit(a, txn(1), "1")).await,
        Err(GatewayError::Unavailable(_))
    ));
    g.shutdown();
    g2.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_and_unknown_wallets_come_back_as_engine_errors() {
    let (g, _, _) = gateway(config()).await;
    let (a, b) = (wal(1), wal(2));
    g.open_wallet(open_op(a)).await.unwrap();
    let e = g.execute(credit(b, txn(1), "1")).await.unwrap_err();
    assert!(
        matches!(e, GatewayError::Rejected(Reject::NotFound(_))),
        "{e:?}"
    );
    let e = g.execute(transfer(a, b, txn(2), "1")).await.unwrap_err();
    assert!(
        matches!(e, GatewayError::Rejected(Reject::NotFound(_))),
        "{e:?}"
    );
    let e = g.execute(credit(a, txn(3), "0.001")).await.unwrap_err();
    assert_eq!(e.code(), "invalid_amount");
    // Opening again answers as before.
    assert_eq!(
        g.open_wallet(open_op(a)).await.unwrap().done,
        Done::Wallet(a)
    );
    g.shutdown();
}

/// A wallet's commands sent together (`submit_many`, a batch's commands for
/// one wallet) run in order in one turn and are answered each as if it had
/// come alone: the same answers, and the same state, as one at a time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_of_commands_answers_and_ends_as_one_at_a_time() {
    let (a, b) = (wal(1), wal(2));
    let ops = || {
        vec![
            debit(a, txn(10), "5"),         // waits for funds
            credit(a, txn(11), "5"),        // pays it
            debit(a, txn(12), "3"),         // waits again, at the head
            credit(a, txn(13), "0.001"),    // refused: too many digits
            credit(a, txn(11), "5"),        // a retry: answered as before
            credit(a, txn(14), "10"),       // pays the second debit
            reserve(a, txn(17), "1", None), // held from what is left
            // Out to b, last: b's receipt comes back after every command
            // in both runs (sent earlier, it would land between two
            // commands one at a time, and the sequences would differ).
            transfer(a, b, txn(15), "2"),
        ]
    };
    let mut ends = Vec::new();
    for grouped in [false, true] {
        let (g, _, _) = gateway(config()).await;
        for w in [a, b] {
            g.open_wallet(open_op(w)).await.unwrap();
        }
        let answers: Vec<_> = if grouped {
            g.submit_many(ops(), Default::default())
                .unwrap()
                .answers()
                .await
                .unwrap()
        } else {
            let mut out = Vec::new();
            for op in ops() {
                out.push(g.execute(op).await);
            }
            out
        };
        quiesce(&g).await;
        let cut = g.cut().unwrap();
        cut.check_invariants().unwrap();
        assert_eq!(g.stats().inflight, 0, "every command was counted out");
        ends.push((answers, cut.digest().unwrap()));
        g.shutdown();
    }
    let (alone, together) = (&ends[0], &ends[1]);
    assert_eq!(alone.0.len(), 8);
    let statuses: Vec<_> = alone
        .0
        .iter()
        .map(|r| match r {
            Ok(answer) => format!("{:?}", answer.txn.as_ref().map(|t| t.status)),
            Err(e) => e.code().to_owned(),
        })
        .collect();
    assert_eq!(statuses[3], "invalid_amount", "{statuses:?}");
    assert_eq!(alone.0[2].as_ref().unwrap().queue_position, Some(1));
    assert_eq!(alone.0, together.0, "the same answers");
    assert_eq!(alone.1, together.1, "the same state");
}

/// A group counts as its commands against the per-wallet bound: refused
/// whole when they do not all fit, and nothing of it runs. Malformed
/// groups are refused before anything is routed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_is_admitted_whole_or_refused_whole() {
    let cfg = GatewayConfig {
        max_inflight_per_wallet: 4,
        ..config()
    };
    let (g, _, _) = gateway(cfg).await;
    let (a, b) = (wal(1), wal(2));
    for w in [a, b] {
        g.open_wallet(open_op(w)).await.unwrap();
    }
    assert_eq!(g.max_group(), 4, "never more than the bound per wallet");
    let credits = |from: u128, n: u128| -> Vec<_> {
        (from..from + n).map(|k| credit(a, txn(k), "1")).collect()
    };
    let e = g
        .submit_many(credits(1, 5), Default::default())
        .unwrap_err();
    assert_eq!(e.code(), "invalid_request", "{e:?}");
    let e = g.submit_many(Vec::new(), Default::default()).unwrap_err();
    assert_eq!(e.code(), "invalid_request", "{e:?}");
    let mixed = vec![credit(a, txn(1), "1"), credit(b, txn(2), "1")];
    let e = g.submit_many(mixed, Default::default()).unwrap_err();
    assert_eq!(e.code(), "invalid_request", "{e:?}");
    let e = g
        .submit_many(vec![open_op(wal(3))], Default::default())
        .unwrap_err();
    assert_eq!(e.code(), "invalid_request", "{e:?}");

    // While the actor is stuck, one command waits; a group of four then
    // does not fit (1 + 4 > 4), a group of three does.
    let blocker = stuck_for_300_ms(&g).await;
    let first = g
        .submit(credit(a, txn(100), "1"), Default::default())
        .unwrap();
    let e = g
        .submit_many(credits(200, 4), Default::default())
        .unwrap_err();
    assert!(
        matches!(e, GatewayError::Overloaded { wallet } if wallet == a),
        "{e:?}"
    );
    let three = g.submit_many(credits(300, 3), Default::default()).unwrap();
    assert_eq!(g.stats().inflight, 4);
    blocker.join().unwrap().unwrap();
    first.answer().await.unwrap();
    for answer in three.answers().await.unwrap() {
        answer.unwrap();
    }
    assert_eq!(
        g.read(a, |w| w.balance(usd()).unwrap().cash).unwrap(),
        d("4"),
        "the refused group ran nothing"
    );
    assert_eq!(
        g.stats().inflight,
        0,
        "every admitted command was counted out"
    );
    g.shutdown();
}
