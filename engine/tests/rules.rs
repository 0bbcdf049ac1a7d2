//! One test per rule of ENGINE.md and of the design decisions documented in
//! the engine's sources (`WalletStatus::permit`, the transfer protocol of
//! `message`, the expiry rule of `wallet::decide`). Every `Harness::run`
//! also checks all ledger invariants (conservation, per-wallet balances,
//! FIFO consistency, messages in flight) after the command.
// The helpers below are test code too: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]
mod common;
use common::*;
use settle_engine::wallet::SettingsPatch;
use settle_engine::{
    Direction, Done, EngineConfig, Event, IfInsufficient, Ledger, Limits, Message, Op, Reject,
    TxnId, TxnInfo, TxnKind, TxnStatus, WalletId, WalletState, WalletStatus,
};

// ---------------------------------------------------------------------------
// Commands
// ---------------------------------------------------------------------------

fn credit_op(w: WalletId, t: TxnId, asset: &str, amount: &str) -> Op {
    Op::Credit {
        wallet: w,
        txn: t,
        asset: code(asset),
        amount: d(amount),
        pending: false,
        info: TxnInfo::default(),
    }
}

fn pending_op(w: WalletId, t: TxnId, asset: &str, amount: &str) -> Op {
    Op::Credit {
        wallet: w,
        txn: t,
        asset: code(asset),
        amount: d(amount),
        pending: true,
        info: TxnInfo::default(),
    }
}

fn debit_op(w: WalletId, t: TxnId, asset: &str, amount: &str) -> Op {
    debit_full(w, t, asset, amount, IfInsufficient::Queue, None)
}

fn debit_full(
    w: WalletId,
    t: TxnId,
    asset: &str,
    amount: &str,
    ifi: IfInsufficient,
    expires: Option<i64>,
) -> Op {
    Op::Debit {
        wallet: w,
        txn: t,
        asset: code(asset),
        amount: d(amount),
        if_insufficient: ifi,
        expires_at: expires.map(at),
        info: TxnInfo::default(),
    }
}

fn reserve_op(w: WalletId, t: TxnId, asset: &str, amount: &str, expires: Option<i64>) -> Op {
    Op::Reserve {
        wallet: w,
        txn: t,
        asset: code(asset),
        amount: d(amount),
        expires_at: expires.map(at),
        info: TxnInfo::default(),
    }
}

fn capture_op(w: WalletId, t: TxnId, amount: Option<&str>) -> Op {
    Op::Capture {
        wallet: w,
        txn: t,
        amount: amount.map(d),
    }
}

fn release_op(w: WalletId, t: TxnId) -> Op {
    Op::Release { wallet: w, txn: t }
}

fn cancel_op(w: WalletId, t: TxnId) -> Op {
    Op::Cancel { wallet: w, txn: t }
}

fn settle_op(w: WalletId, t: TxnId) -> Op {
    Op::SettlePending { wallet: w, txn: t }
}

fn reject_op(w: WalletId, t: TxnId) -> Op {
    Op::RejectPending { wallet: w, txn: t }
}

fn expire_op(w: WalletId) -> Op {
    Op::Expire { wallet: w }
}

fn status_op(w: WalletId, status: WalletStatus) -> Op {
    Op::SetStatus {
        wallet: w,
        status,
        reason: None,
    }
}

fn transfer_op(from: WalletId, to: WalletId, t: TxnId, asset: &str, amount: &str) -> Op {
    transfer_full(from, to, t, asset, amount, IfInsufficient::Queue, None)
}

fn transfer_full(
    from: WalletId,
    to: WalletId,
    t: TxnId,
    asset: &str,
    amount: &str,
    ifi: IfInsufficient,
    expires: Option<i64>,
) -> Op {
    Op::Transfer {
        from,
        to,
        txn: t,
        asset: code(asset),
        amount: d(amount),
        if_insufficient: ifi,
        expires_at: expires.map(at),
        info: TxnInfo::default(),
    }
}

#[allow(clippy::too_many_arguments)]
fn convert_op(
    from: WalletId,
    to: WalletId,
    t: TxnId,
    sell: &str,
    buy: &str,
    amount: &str,
    rate: &str,
) -> Op {
    Op::Convert {
        from,
        to,
        txn: t,
        sell_asset: code(sell),
        buy_asset: code(buy),
        sell_amount: d(amount),
        rate: d(rate),
        if_insufficient: IfInsufficient::Queue,
        expires_at: None,
        info: TxnInfo::default(),
    }
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// Runs `op` at instant `ms` (the harness clock moves there).
fn run_at(h: &mut Harness, ms: i64, op: Op) -> Result<Done, Reject> {
    assert!(ms > h.now, "time only moves forward in these tests");
    h.now = ms - 1;
    h.run(op)
}

/// `[cash, reserved, pending, queued, committed, available]` as text, so
/// that the comparison also checks the scale ("10.50", not "10.5").
fn bal(h: &Harness, w: WalletId, asset: &str) -> [String; 6] {
    let b = h.balance(w, asset);
    [
        b.cash,
        b.reserved,
        b.pending,
        b.queued,
        b.committed,
        b.available,
    ]
    .map(|x| x.to_string())
}

#[track_caller]
fn assert_bal(h: &Harness, w: WalletId, asset: &str, want: [&str; 6]) {
    assert_eq!(
        bal(h, w, asset),
        want.map(str::to_owned),
        "{w} {asset}: [cash, reserved, pending, queued, committed, available]"
    );
}

/// Runs a command that must be refused, and checks it left no trace: no
/// event, the same state digest.
#[track_caller]
fn refused(h: &mut Harness, op: Op) -> Reject {
    let events = h.events.len();
    let before = h.ledger.digest().unwrap();
    let r = h.run(op.clone());
    let err = match r {
        Err(e) => e,
        Ok(done) => panic!("{op:?} was accepted ({done:?}), expected a refusal"),
    };
    assert_eq!(
        h.events.len(),
        events,
        "refused {op:?} ({err:?}) emitted events: {:?}",
        &h.events[events..]
    );
    assert_eq!(
        h.ledger.digest().unwrap(),
        before,
        "refused {op:?} changed the state"
    );
    err
}

/// Delivers the one message in flight for `t`, checking the invariants.
fn deliver_one(h: &mut Harness, t: TxnId) {
    h.now += 1;
    h.ledger.deliver(t, at(h.now), &mut h.events).unwrap();
    h.ledger.check_invariants().unwrap();
}

fn flight(h: &Harness, t: TxnId) -> Option<Message> {
    h.ledger.in_flight().find(|m| m.txn() == t).copied()
}

/// Minor units of `asset` in flight, per the conservation audit.
fn audit_in_flight(h: &Harness, asset: &str) -> i128 {
    h.ledger
        .audit()
        .into_iter()
        .find(|a| a.asset == code(asset))
        .map_or(0, |a| a.in_flight)
}

fn seq(h: &Harness, w: WalletId) -> u64 {
    h.ledger.wallet(w).unwrap().sequence
}

fn has_txn(h: &Harness, w: WalletId, t: TxnId) -> bool {
    h.ledger.wallet(w).unwrap().txn(t).is_some()
}

/// A wallet with `amount` of one asset in cash.
fn funded(h: &mut Harness, w: WalletId, asset: &str, amount: &str) {
    h.open(w, &[asset]);
    h.credit(w, txn(0xF000_0000 + w.ulid().0), asset, amount)
        .unwrap();
}

fn queue_order(h: &Harness, w: WalletId, asset: &str) -> Vec<TxnId> {
    h.ledger
        .wallet(w)
        .unwrap()
        .book(code(asset))
        .unwrap()
        .queue()
        .map(|i| i.txn)
        .collect()
}

// ---------------------------------------------------------------------------
// Amounts
// ---------------------------------------------------------------------------

#[test]
fn amounts_with_more_decimals_than_the_asset_scale_are_refused_never_rounded() {
    let mut h = Harness::new();
    let (w, v) = (wal(1), wal(2));
    h.open(w, &["USD", "JPY", "ETH", "BTC"]);
    h.open(v, &["USD"]);
    h.credit(w, txn(1), "USD", "100").unwrap();
    h.run(reserve_op(w, txn(2), "USD", "10", None)).unwrap();
    for op in [
        credit_op(w, txn(10), "USD", "10.505"),
        credit_op(w, txn(11), "USD", "0.001"),
        credit_op(w, txn(12), "JPY", "1.5"),
        credit_op(w, txn(13), "ETH", "0.0000000000000000001"),
        credit_op(w, txn(14), "BTC", "0.000000001"),
        pending_op(w, txn(15), "USD", "1.001"),
        debit_op(w, txn(16), "USD", "1.001"),
        reserve_op(w, txn(17), "USD", "1.001", None),
        transfer_op(w, v, txn(18), "USD", "1.001"),
        capture_op(w, txn(2), Some("1.001")),
    ] {
        assert!(matches!(refused(&mut h, op), Reject::InvalidAmount(_)));
    }
    assert_bal(
        &h,
        w,
        "USD",
        ["100.00", "10.00", "0.00", "0.00", "10.00", "90.00"],
    );
    h.assert_replay_matches();
}

#[test]
fn zero_and_negative_amounts_are_refused() {
    let mut h = Harness::new();
    let (w, v) = (wal(1), wal(2));
    funded(&mut h, w, "USD", "100");
    h.open(v, &["USD", "EUR"]);
    h.run(reserve_op(w, txn(2), "USD", "10", None)).unwrap();
    for amount in ["0", "0.00", "-1", "-0.01"] {
        for op in [
            credit_op(w, txn(10), "USD", amount),
            pending_op(w, txn(11), "USD", amount),
            debit_op(w, txn(12), "USD", amount),
            reserve_op(w, txn(13), "USD", amount, None),
            transfer_op(w, v, txn(14), "USD", amount),
            convert_op(w, v, txn(15), "USD", "EUR", amount, "0.9"),
            capture_op(w, txn(2), Some(amount)),
        ] {
            let e = refused(&mut h, op.clone());
            assert!(matches!(e, Reject::InvalidAmount(_)), "{op:?}: {e:?}");
        }
    }
    h.assert_replay_matches();
}

#[test]
fn unknown_assets_and_assets_the_wallet_does_not_hold_are_refused() {
    let mut h = Harness::new();
    let w = wal(1);
    funded(&mut h, w, "USD", "100");
    // XYZ is a well-formed code that no registry knows.
    for op in [
        credit_op(w, txn(10), "XYZ", "1"),
        debit_op(w, txn(11), "XYZ", "1"),
        reserve_op(w, txn(12), "XYZ", "1", None),
        // EUR is known to the engine, but this wallet does not hold it.
        credit_op(w, txn(13), "EUR", "1"),
        pending_op(w, txn(14), "EUR", "1"),
        debit_op(w, txn(15), "EUR", "1"),
        reserve_op(w, txn(16), "EUR", "1", None),
    ] {
        let e = refused(&mut h, op.clone());
        assert!(matches!(e, Reject::UnknownAsset(_)), "{op:?}: {e:?}");
    }
    // A wallet cannot be opened with an unknown asset either.
    let e = h
        .run(Op::OpenWallet {
            wallet: wal(9),
            client: settle_engine::ClientId::from_u128(1),
            kind: settle_engine::WalletKind::General,
            customer: None,
            assets: vec![code("XYZ")],
            single_asset: true,
            settings: Default::default(),
        })
        .unwrap_err();
    assert!(matches!(e, Reject::UnknownAsset(_)), "{e:?}");
    assert!(h.ledger.wallet(wal(9)).is_none());
    assert_bal(
        &h,
        w,
        "USD",
        ["100.00", "0.00", "0.00", "0.00", "0.00", "100.00"],
    );
    h.assert_replay_matches();
}

#[test]
fn trailing_zeros_are_accepted_and_amounts_are_stored_at_exactly_the_asset_scale() {
    let mut h = Harness::new();
    let w = wal(1);
    h.open(w, &["USD"]);
    h.credit(w, txn(1), "USD", "10.500").unwrap();
    h.credit(w, txn(2), "USD", "5").unwrap();
    h.credit(w, txn(3), "USD", "0.1").unwrap();
    let wallet = h.ledger.wallet(w).unwrap();
    let amounts: Vec<String> = [1, 2, 3]
        .iter()
        .map(|&n| wallet.txn(txn(n)).unwrap().amount.to_string())
        .collect();
    assert_eq!(amounts, ["10.50", "5.00", "0.10"]);
    assert_bal(
        &h,
        w,
        "USD",
        ["15.60", "0.00", "0.00", "0.00", "0.00", "15.60"],
    );
    h.debit(w, txn(4), "USD", "0.600000").unwrap();
    assert_eq!(
        h.ledger
            .wallet(w)
            .unwrap()
            .txn(txn(4))
            .unwrap()
            .amount
            .to_string(),
        "0.60"
    );
    assert_bal(
        &h,
        w,
        "USD",
        ["15.00", "0.00", "0.00", "0.00", "0.00", "15.00"],
    );
    // Every amount carried by an event is at the asset's scale too.
    for e in &h.events {
        if let Event::CreditAccepted { amount, .. } | Event::OutboundQueued { amount, .. } = e {
            assert_eq!(amount.scale(), 2, "{e:?}");
        }
    }
    h.assert_replay_matches();
}

#[test]
fn jpy_has_scale_zero() {
    let mut h = Harness::new();
    let w = wal(1);
    h.open(w, &["JPY"]);
    h.credit(w, txn(1), "JPY", "1000").unwrap();
    h.credit(w, txn(2), "JPY", "5.0").unwrap();
    assert!(matches!(
        refused(&mut h, credit_op(w, txn(3), "JPY", "0.5")),
        Reject::InvalidAmount(_)
    ));
    assert!(matches!(
        refused(&mut h, debit_op(w, txn(4), "JPY", "1.1")),
        Reject::InvalidAmount(_)
    ));
    h.debit(w, txn(5), "JPY", "5").unwrap();
    assert_bal(&h, w, "JPY", ["1000", "0", "0", "0", "0", "1000"]);
    assert_eq!(
        h.ledger
            .wallet(w)
            .unwrap()
            .txn(txn(2))
            .unwrap()
            .amount
            .to_string(),
        "5"
    );
    h.assert_replay_matches();
}

#[test]
fn eth_has_scale_eighteen() {
    let mut h = Harness::new();
    let w = wal(1);
    h.open(w, &["ETH"]);
    h.credit(w, txn(1), "ETH", "0.000000000000000001").unwrap();
    h.credit(w, txn(2), "ETH", "1.5").unwrap();
    assert!(matches!(
        refused(&mut h, credit_op(w, txn(3), "ETH", "0.0000000000000000001")),
        Reject::InvalidAmount(_)
    ));
    assert_bal(
        &h,
        w,
        "ETH",
        [
            "1.500000000000000001",
            "0.000000000000000000",
            "0.000000000000000000",
            "0.000000000000000000",
            "0.000000000000000000",
            "1.500000000000000001",
        ],
    );
    h.debit(w, txn(4), "ETH", "0.000000000000000001").unwrap();
    assert_eq!(h.balance(w, "ETH").cash.to_string(), "1.500000000000000000");
    h.assert_replay_matches();
}

#[test]
fn out_of_range_amounts_and_balances_are_refused() {
    let mut h = Harness::new();
    let w = wal(1);
    h.open(w, &["USD", "ETH"]);
    // At most 28 significant digits: USD up to 26 digits before the point,
    // ETH up to 10.
    assert!(matches!(
        refused(
            &mut h,
            credit_op(w, txn(1), "USD", "100000000000000000000000000")
        ),
        Reject::InvalidAmount(_)
    ));
    assert!(matches!(
        refused(&mut h, credit_op(w, txn(2), "ETH", "10000000000")),
        Reject::InvalidAmount(_)
    ));
    let max_usd = "99999999999999999999999999.99";
    h.credit(w, txn(3), "USD", max_usd).unwrap();
    h.credit(w, txn(4), "ETH", "9999999999.999999999999999999")
        .unwrap();
    // A credit that would push a balance past the bound is refused, not rounded.
    assert!(matches!(
        refused(&mut h, credit_op(w, txn(5), "USD", "0.01")),
        Reject::InvalidAmount(_)
    ));
    assert_bal(
        &h,
        w,
        "USD",
        [max_usd, "0.00", "0.00", "0.00", "0.00", max_usd],
    );
    h.assert_replay_matches();
}

// ---------------------------------------------------------------------------
// Balances
// ---------------------------------------------------------------------------

#[test]
fn balance_fields_follow_their_definitions() {
    let mut h = Harness::new();
    let w = wal(1);
    h.open(w, &["USD"]);
    assert_bal(
        &h,
        w,
        "USD",
        ["0.00", "0.00", "0.00", "0.00", "0.00", "0.00"],
    );
    h.credit(w, txn(1), "USD", "100").unwrap();
    assert_bal(
        &h,
        w,
        "USD",
        ["100.00", "0.00", "0.00", "0.00", "0.00", "100.00"],
    );
    // pending is not in cash and not available.
    h.run(pending_op(w, txn(2), "USD", "40")).unwrap();
    assert_bal(
        &h,
        w,
        "USD",
        ["100.00", "0.00", "40.00", "0.00", "0.00", "100.00"],
    );
    // reserved is part of cash and counts in committed.
    h.run(reserve_op(w, txn(3), "USD", "30", None)).unwrap();
    assert_bal(
        &h,
        w,
        "USD",
        ["100.00", "30.00", "40.00", "0.00", "30.00", "70.00"],
    );
    // a settled debit leaves cash.
    h.debit(w, txn(4), "USD", "20").unwrap();
    assert_bal(
        &h,
        w,
        "USD",
        ["80.00", "30.00", "40.00", "0.00", "30.00", "50.00"],
    );
    // a queued item counts in queued and committed.
    h.debit(w, txn(5), "USD", "60").unwrap();
    assert_eq!(h.status(w, txn(5)), TxnStatus::AwaitingFunds);
    assert_bal(
        &h,
        w,
        "USD",
        ["80.00", "30.00", "40.00", "60.00", "90.00", "0.00"],
    );
    h.assert_replay_matches();
}

#[test]
fn available_is_cash_minus_committed_and_never_negative() {
    let mut h = Harness::new();
    let w = wal(1);
    funded(&mut h, w, "USD", "30");
    h.debit(w, txn(1), "USD", "40").unwrap();
    h.debit(w, txn(2), "USD", "10").unwrap();
    // cash 30 - committed 50 = -20, shown as 0.
    assert_bal(
        &h,
        w,
        "USD",
        ["30.00", "0.00", "0.00", "50.00", "50.00", "0.00"],
    );
    let b = h.balance(w, "USD");
    assert_eq!(b.committed, b.reserved + b.queued);
    h.credit(w, txn(3), "USD", "25").unwrap();
    // 55 >= 40: the 40 settles; 15 >= 10: the 10 settles too.
    assert_bal(
        &h,
        w,
        "USD",
        ["5.00", "0.00", "0.00", "0.00", "0.00", "5.00"],
    );
    h.assert_replay_matches();
}

// ---------------------------------------------------------------------------
// Credits
// ---------------------------------------------------------------------------

#[test]
fn a_credit_settles_at_once() {
    let mut h = Harness::new();
    let w = wal(1);
    h.open(w, &["USD"]);
    assert_eq!(h.credit(w, txn(1), "USD", "12.34"), Ok(Done::Txn(txn(1))));
    assert_eq!(h.status(w, txn(1)), TxnStatus::Settled);
    let t = h.ledger.wallet(w).unwrap().txn(txn(1)).unwrap().clone();
    assert_eq!(
        (t.kind, t.direction),
        (TxnKind::Credit, Some(Direction::In))
    );
    assert_bal(
        &h,
        w,
        "USD",
        ["12.34", "0.00", "0.00", "0.00", "0.00", "12.34"],
    );
    h.assert_replay_matches();
}

#[test]
fn a_pending_credit_settles_into_cash_and_drains_the_queue() {
    let mut h = Harness::new();
    let w = wal(1);
    funded(&mut h, w, "USD", "10");
    h.run(pending_op(w, txn(1), "USD", "50")).unwrap();
    assert_eq!(h.status(w, txn(1)), TxnStatus::Pending);
    h.debit(w, txn(2), "USD", "40").unwrap();
    assert_eq!(
        h.status(w, txn(2)),
        TxnStatus::AwaitingFunds,
        "pending money does not fund a debit"
    );
    assert_bal(
        &h,
        w,
        "USD",
        ["10.00", "0.00", "50.00", "40.00", "40.00", "0.00"],
    );
    h.run(settle_op(w, txn(1))).unwrap();
    assert_eq!(h.status(w, txn(1)), TxnStatus::Settled);
    assert_eq!(h.status(w, txn(2)), TxnStatus::Settled);
    assert_bal(
        &h,
        w,
        "USD",
        ["20.00", "0.00", "0.00", "0.00", "0.00", "20.00"],
    );
    h.assert_replay_matches();
}

#[test]
fn a_rejected_pending_credit_is_gone() {
    let mut h = Harness::new();
    let w = wal(1);
    h.open(w, &["USD"]);
    h.run(pending_op(w, txn(1), "USD", "50")).unwrap();
    h.debit(w, txn(2), "USD", "40").unwrap();
    h.run(reject_op(w, txn(1))).unwrap();
    assert_eq!(h.status(w, txn(1)), TxnStatus::Rejected);
    assert_eq!(h.status(w, txn(2)), TxnStatus::AwaitingFunds);
    assert_bal(
        &h,
        w,
        "USD",
        ["0.00", "0.00", "0.00", "40.00", "40.00", "0.00"],
    );
    let audit = h
        .ledger
        .audit()
        .into_iter()
        .find(|a| a.asset == code("USD"))
        .unwrap();
    assert_eq!((audit.credited, audit.cash), (0, 0));
    h.assert_replay_matches();
}

#[test]
fn settling_or_rejecting_a_credit_that_is_not_pending_is_invalid_state() {
    let mut h = Harness::new();
    let w = wal(1);
    funded(&mut h, w, "USD", "100");
    h.credit(w, txn(1), "USD", "10").unwrap();
    h.run(pending_op(w, txn(2), "USD", "10")).unwrap();
    h.run(reject_op(w, txn(2))).unwrap();
    h.run(pending_op(w, txn(3), "USD", "10")).unwrap();
    h.run(settle_op(w, txn(3))).unwrap();
    h.debit(w, txn(4), "USD", "1").unwrap();
    for op in [
        settle_op(w, txn(1)),
        reject_op(w, txn(1)),
        settle_op(w, txn(2)),
        reject_op(w, txn(2)),
        settle_op(w, txn(3)),
        reject_op(w, txn(3)),
        // Not a credit at all.
        settle_op(w, txn(4)),
        reject_op(w, txn(4)),
    ] {
        let e = refused(&mut h, op.clone());
        assert!(matches!(e, Reject::InvalidState(_)), "{op:?}: {e:?}");
    }
    h.assert_replay_matches();
}

#[test]
fn follow_ups_on_an_unknown_txn_or_wallet_are_not_found() {
    let mut h = Harness::new();
    let w = wal(1);
    funded(&mut h, w, "USD", "100");
    for op in [
        settle_op(w, txn(99)),
        reject_op(w, txn(99)),
        capture_op(w, txn(99), None),
        release_op(w, txn(99)),
        cancel_op(w, txn(99)),
        credit_op(wal(9), txn(1), "USD", "1"),
        debit_op(wal(9), txn(1), "USD", "1"),
        expire_op(wal(9)),
        status_op(wal(9), WalletStatus::Suspended),
    ] {
        let e = refused(&mut h, op.clone());
        assert!(matches!(e, Reject::NotFound(_)), "{op:?}: {e:?}");
    }
    h.assert_replay_matches();
}

// ---------------------------------------------------------------------------
// FIFO queue
// ---------------------------------------------------------------------------

#[test]
fn an_item_settles_at_once_when_the_queue_is_empty_and_cash_minus_reserved_covers_it() {
    let mut h = Harness::new();
    let w = wal(1);
    funded(&mut h, w, "USD", "100");
    h.run(reserve_op(w, txn(1), "USD", "30", None)).unwrap();
    // Exactly cash - reserved: settles.
    h.debit(w, txn(2), "USD", "70").unwrap();
    assert_eq!(h.status(w, txn(2)), TxnStatus::Settled);
    assert_bal(
        &h,
        w,
        "USD",
        ["30.00", "30.00", "0.00", "0.00", "30.00", "0.00"],
    );
    // One cent more than cash - reserved: waits, although cash covers it.
    h.debit(w, txn(3), "USD", "0.01").unwrap();
    assert_eq!(h.status(w, txn(3)), TxnStatus::AwaitingFunds);
    assert_bal(
        &h,
        w,
        "USD",
        ["30.00", "30.00", "0.00", "0.01", "30.01", "0.00"],
    );
    h.assert_replay_matches();
}

#[test]
fn an_item_that_cannot_settle_waits_as_awaiting_funds() {
    let mut h = Harness::new();
    let w = wal(1);
    funded(&mut h, w, "USD", "10");
    assert_eq!(h.debit(w, txn(1), "USD", "10.01"), Ok(Done::Txn(txn(1))));
    assert_eq!(h.status(w, txn(1)), TxnStatus::AwaitingFunds);
    assert_eq!(queue_order(&h, w, "USD"), [txn(1)]);
    // The queue is not empty: even an item that fits waits behind it.
    h.debit(w, txn(2), "USD", "1").unwrap();
    assert_eq!(h.status(w, txn(2)), TxnStatus::AwaitingFunds);
    assert_eq!(queue_order(&h, w, "USD"), [txn(1), txn(2)]);
    assert_bal(
        &h,
        w,
        "USD",
        ["10.00", "0.00", "0.00", "11.01", "11.01", "0.00"],
    );
    h.assert_replay_matches();
}

#[test]
fn if_insufficient_reject_refuses_with_insufficient_funds_and_keeps_nothing() {
    let mut h = Harness::new();
    let (w, v) = (wal(1), wal(2));
    funded(&mut h, w, "USD", "10");
    h.open(v, &["USD", "EUR"]);
    let reject = IfInsufficient::Reject;
    let e = refused(&mut h, debit_full(w, txn(1), "USD", "10.01", reject, None));
    assert!(matches!(e, Reject::InsufficientFunds(_)), "{e:?}");
    assert_eq!(e.code(), "insufficient_funds");
    assert!(!has_txn(&h, w, txn(1)), "nothing kept");
    let e = refused(
        &mut h,
        transfer_full(w, v, txn(2), "USD", "10.01", reject, None),
    );
    assert!(matches!(e, Reject::InsufficientFunds(_)), "{e:?}");
    assert!(!has_txn(&h, w, txn(2)) && !has_txn(&h, v, txn(2)));
    // With a non-empty queue, an item that would fit still cannot settle now.
    h.debit(w, txn(3), "USD", "20").unwrap();
    let e = refused(&mut h, debit_full(w, txn(4), "USD", "1", reject, None));
    assert!(matches!(e, Reject::InsufficientFunds(_)), "{e:?}");
    assert!(!has_txn(&h, w, txn(4)));
    // When it fits, "reject" settles like any other item.
    h.run(cancel_op(w, txn(3))).unwrap();
    h.run(debit_full(w, txn(5), "USD", "10", reject, None))
        .unwrap();
    assert_eq!(h.status(w, txn(5)), TxnStatus::Settled);
    assert_bal(
        &h,
        w,
        "USD",
        ["0.00", "0.00", "0.00", "0.00", "0.00", "0.00"],
    );
    h.assert_replay_matches();
}

#[test]
fn the_head_blocks_smaller_later_items() {
    let mut h = Harness::new();
    let w = wal(1);
    funded(&mut h, w, "USD", "30");
    h.debit(w, txn(1), "USD", "40").unwrap();
    h.debit(w, txn(2), "USD", "5").unwrap();
    h.debit(w, txn(3), "USD", "1").unwrap();
    h.credit(w, txn(4), "USD", "9.99").unwrap();
    for t in [1, 2, 3] {
        assert_eq!(
            h.status(w, txn(t)),
            TxnStatus::AwaitingFunds,
            "txn {t} must not overtake the head"
        );
    }
    assert_eq!(queue_order(&h, w, "USD"), [txn(1), txn(2), txn(3)]);
    h.credit(w, txn(5), "USD", "0.01").unwrap();
    assert_eq!(h.status(w, txn(1)), TxnStatus::Settled);
    assert_eq!(h.status(w, txn(2)), TxnStatus::AwaitingFunds);
    assert_bal(
        &h,
        w,
        "USD",
        ["0.00", "0.00", "0.00", "6.00", "6.00", "0.00"],
    );
    h.assert_replay_matches();
}

#[test]
fn a_credit_drains_the_queue_in_order_while_the_head_fits() {
    let mut h = Harness::new();
    let w = wal(1);
    h.open(w, &["USD"]);
    h.debit(w, txn(1), "USD", "10").unwrap();
    h.debit(w, txn(2), "USD", "20").unwrap();
    h.debit(w, txn(3), "USD", "30").unwrap();
    let before = h.events.len();
    h.credit(w, txn(4), "USD", "35").unwrap();
    let settled: Vec<TxnId> = h.events[before..]
        .iter()
        .filter_map(|e| match e {
            Event::OutboundSettled { txn, .. } => Some(*txn),
            _ => None,
        })
        .collect();
    assert_eq!(
        settled,
        [txn(1), txn(2)],
        "settled in the order they entered"
    );
    assert_eq!(h.status(w, txn(3)), TxnStatus::AwaitingFunds);
    assert_bal(
        &h,
        w,
        "USD",
        ["5.00", "0.00", "0.00", "30.00", "30.00", "0.00"],
    );
    h.credit(w, txn(5), "USD", "25").unwrap();
    assert_eq!(h.status(w, txn(3)), TxnStatus::Settled);
    assert_bal(
        &h,
        w,
        "USD",
        ["0.00", "0.00", "0.00", "0.00", "0.00", "0.00"],
    );
    h.assert_replay_matches();
}

#[test]
fn releasing_a_reservation_drains_the_queue() {
    let mut h = Harness::new();
    let w = wal(1);
    funded(&mut h, w, "USD", "100");
    h.run(reserve_op(w, txn(1), "USD", "80", None)).unwrap();
    h.debit(w, txn(2), "USD", "50").unwrap();
    assert_eq!(h.status(w, txn(2)), TxnStatus::AwaitingFunds);
    h.run(release_op(w, txn(1))).unwrap();
    assert_eq!(h.status(w, txn(1)), TxnStatus::Released);
    assert_eq!(h.status(w, txn(2)), TxnStatus::Settled);
    assert_bal(
        &h,
        w,
        "USD",
        ["50.00", "0.00", "0.00", "0.00", "0.00", "50.00"],
    );
    h.assert_replay_matches();
}

#[test]
fn a_partial_capture_releases_the_rest_and_drains_the_queue() {
    let mut h = Harness::new();
    let w = wal(1);
    funded(&mut h, w, "USD", "100");
    h.run(reserve_op(w, txn(1), "USD", "50", None)).unwrap();
    h.debit(w, txn(2), "USD", "60").unwrap();
    assert_eq!(h.status(w, txn(2)), TxnStatus::AwaitingFunds);
    h.run(capture_op(w, txn(1), Some("20"))).unwrap();
    // cash 100 - 20 captured = 80; the 30 released lets the 60 settle.
    assert_eq!(h.status(w, txn(1)), TxnStatus::Captured);
    assert_eq!(h.status(w, txn(2)), TxnStatus::Settled);
    assert_bal(
        &h,
        w,
        "USD",
        ["20.00", "0.00", "0.00", "0.00", "0.00", "20.00"],
    );
    h.assert_replay_matches();
}

#[test]
fn cancelling_the_head_lets_the_next_items_settle() {
    let mut h = Harness::new();
    let w = wal(1);
    funded(&mut h, w, "USD", "30");
    h.debit(w, txn(1), "USD", "40").unwrap();
    h.debit(w, txn(2), "USD", "20").unwrap();
    h.debit(w, txn(3), "USD", "10").unwrap();
    h.debit(w, txn(4), "USD", "5").unwrap();
    h.run(cancel_op(w, txn(1))).unwrap();
    assert_eq!(h.status(w, txn(1)), TxnStatus::Cancelled);
    assert_eq!(h.status(w, txn(2)), TxnStatus::Settled);
    assert_eq!(h.status(w, txn(3)), TxnStatus::Settled);
    assert_eq!(h.status(w, txn(4)), TxnStatus::AwaitingFunds);
    assert_bal(
        &h,
        w,
        "USD",
        ["0.00", "0.00", "0.00", "5.00", "5.00", "0.00"],
    );
    h.assert_replay_matches();
}

#[test]
fn cancelling_a_middle_item_keeps_the_order_of_the_others() {
    let mut h = Harness::new();
    let w = wal(1);
    funded(&mut h, w, "USD", "30");
    h.debit(w, txn(1), "USD", "40").unwrap();
    h.debit(w, txn(2), "USD", "25").unwrap();
    h.debit(w, txn(3), "USD", "10").unwrap();
    h.run(cancel_op(w, txn(2))).unwrap();
    assert_eq!(h.status(w, txn(2)), TxnStatus::Cancelled);
    assert_eq!(
        h.status(w, txn(1)),
        TxnStatus::AwaitingFunds,
        "the head still blocks"
    );
    assert_eq!(h.status(w, txn(3)), TxnStatus::AwaitingFunds);
    assert_eq!(queue_order(&h, w, "USD"), [txn(1), txn(3)]);
    assert_bal(
        &h,
        w,
        "USD",
        ["30.00", "0.00", "0.00", "50.00", "50.00", "0.00"],
    );
    h.credit(w, txn(4), "USD", "20").unwrap();
    assert_eq!(h.status(w, txn(1)), TxnStatus::Settled);
    assert_eq!(h.status(w, txn(3)), TxnStatus::Settled);
    assert_bal(
        &h,
        w,
        "USD",
        ["0.00", "0.00", "0.00", "0.00", "0.00", "0.00"],
    );
    h.assert_replay_matches();
}

#[test]
fn only_a_queued_item_can_be_cancelled() {
    let mut h = Harness::new();
    let w = wal(1);
    funded(&mut h, w, "USD", "100");
    h.debit(w, txn(1), "USD", "10").unwrap();
    h.debit(w, txn(2), "USD", "500").unwrap();
    h.run(cancel_op(w, txn(2))).unwrap();
    h.run(reserve_op(w, txn(3), "USD", "1", None)).unwrap();
    for op in [
        cancel_op(w, txn(1)),               // settled
        cancel_op(w, txn(2)),               // already cancelled
        cancel_op(w, txn(3)),               // a reservation
        cancel_op(w, txn(0xF000_0000 + 1)), // a credit
    ] {
        let e = refused(&mut h, op.clone());
        assert!(matches!(e, Reject::InvalidState(_)), "{op:?}: {e:?}");
    }
    assert_eq!(h.status(w, txn(1)), TxnStatus::Settled);
    assert!(matches!(
        refused(&mut h, cancel_op(w, txn(77))),
        Reject::NotFound(_)
    ));
    h.assert_replay_matches();
}

#[test]
fn expires_at_must_be_in_the_future_at_submit() {
    let mut h = Harness::new();
    let (w, v) = (wal(1), wal(2));
    funded(&mut h, w, "USD", "100");
    h.open(v, &["USD"]);
    let q = IfInsufficient::Queue;
    h.now = 4_999;
    // The command runs at 5_000: an expiry at or before it is refused.
    for (n, exp) in [(1, 5_000), (2, 4_000)] {
        for op in [
            debit_full(w, txn(n * 10), "USD", "500", q, Some(exp)),
            reserve_op(w, txn(n * 10 + 1), "USD", "1", Some(exp)),
            transfer_full(w, v, txn(n * 10 + 2), "USD", "500", q, Some(exp)),
        ] {
            h.now = 4_999;
            let e = refused(&mut h, op.clone());
            assert!(matches!(e, Reject::InvalidRequest(_)), "{op:?}: {e:?}");
        }
    }
    h.now = 4_999;
    h.run(debit_full(w, txn(5), "USD", "500", q, Some(5_001)))
        .unwrap();
    assert_eq!(h.status(w, txn(5)), TxnStatus::AwaitingFunds);
    h.assert_replay_matches();
}

#[test]
fn a_queued_item_expires_at_its_instant_and_the_next_one_settles() {
    let mut h = Harness::new();
    let w = wal(1);
    funded(&mut h, w, "USD", "30");
    let q = IfInsufficient::Queue;
    h.run(debit_full(w, txn(1), "USD", "40", q, Some(5_000)))
        .unwrap();
    h.run(debit_full(w, txn(2), "USD", "10", q, Some(9_000)))
        .unwrap();
    assert_eq!(h.ledger.wallet(w).unwrap().next_expiry(), Some(at(5_000)));
    // Before the instant: nothing happens.
    let n = h.events.len();
    run_at(&mut h, 4_999, expire_op(w)).unwrap();
    assert_eq!(h.events.len(), n);
    assert_eq!(h.status(w, txn(1)), TxnStatus::AwaitingFunds);
    // At the instant: the head expires, and the 10 behind it settles.
    run_at(&mut h, 5_000, expire_op(w)).unwrap();
    assert_eq!(h.status(w, txn(1)), TxnStatus::Expired);
    assert_eq!(h.status(w, txn(2)), TxnStatus::Settled);
    assert_eq!(
        h.ledger.wallet(w).unwrap().next_expiry(),
        None,
        "a settled item no longer expires"
    );
    assert_bal(
        &h,
        w,
        "USD",
        ["20.00", "0.00", "0.00", "0.00", "0.00", "20.00"],
    );
    // An expired item can no longer be cancelled.
    assert!(matches!(
        refused(&mut h, cancel_op(w, txn(1))),
        Reject::InvalidState(_)
    ));
    h.assert_replay_matches();
}

#[test]
fn expiry_after_the_instant_also_expires_and_a_middle_item_can_expire() {
    let mut h = Harness::new();
    let w = wal(1);
    funded(&mut h, w, "USD", "30");
    let q = IfInsufficient::Queue;
    h.run(debit_full(w, txn(1), "USD", "40", q, None)).unwrap();
    h.run(debit_full(w, txn(2), "USD", "10", q, Some(5_000)))
        .unwrap();
    h.run(debit_full(w, txn(3), "USD", "10", q, None)).unwrap();
    run_at(&mut h, 7_000, expire_op(w)).unwrap();
    assert_eq!(h.status(w, txn(2)), TxnStatus::Expired);
    assert_eq!(queue_order(&h, w, "USD"), [txn(1), txn(3)]);
    assert_bal(
        &h,
        w,
        "USD",
        ["30.00", "0.00", "0.00", "50.00", "50.00", "0.00"],
    );
    let expired_at = h.events.iter().find_map(|e| match e {
        Event::OutboundExpired { txn: t, at, .. } if *t == txn(2) => Some(*at),
        _ => None,
    });
    assert_eq!(expired_at, Some(at(7_000)));
    h.assert_replay_matches();
}

/// Per `wallet::decide`: every command runs expiry first, and the expiry is
/// kept even when the command itself is refused.
#[test]
fn any_later_money_command_on_the_wallet_expires_due_items_first() {
    let (w, v) = (wal(1), wal(2));
    let commands: Vec<(&str, Op)> = vec![
        ("credit", credit_op(w, txn(50), "USD", "1")),
        ("pending credit", pending_op(w, txn(50), "USD", "1")),
        ("debit", debit_op(w, txn(50), "USD", "1")),
        ("reserve", reserve_op(w, txn(50), "USD", "1", None)),
        ("capture", capture_op(w, txn(3), None)),
        ("release", release_op(w, txn(3))),
        ("cancel", cancel_op(w, txn(4))),
        ("settle pending", settle_op(w, txn(5))),
        ("reject pending", reject_op(w, txn(5))),
        ("status", status_op(w, WalletStatus::Restricted)),
        ("transfer", transfer_op(w, v, txn(50), "USD", "1")),
        (
            "convert",
            convert_op(w, v, txn(50), "USD", "EUR", "1", "0.5"),
        ),
        ("expire", expire_op(w)),
        ("refused debit", debit_op(w, txn(50), "USD", "0.001")),
        ("refused capture", capture_op(w, txn(99), None)),
    ];
    let mut failures = Vec::new();
    for (name, op) in commands {
        let mut h = Harness::new();
        funded(&mut h, w, "USD", "30");
        h.open(v, &["USD", "EUR"]);
        let q = IfInsufficient::Queue;
        h.run(reserve_op(w, txn(3), "USD", "5", Some(5_000)))
            .unwrap();
        h.run(debit_full(w, txn(1), "USD", "40", q, Some(5_000)))
            .unwrap();
        h.run(debit_full(w, txn(2), "USD", "10", q, None)).unwrap();
        h.run(debit_full(w, txn(4), "USD", "1000", q, None))
            .unwrap();
        h.run(pending_op(w, txn(5), "USD", "1")).unwrap();
        let n = h.events.len();
        let _ = run_at(&mut h, 6_000, op);
        let first = h.events.get(n).cloned();
        let ok = h.status(w, txn(1)) == TxnStatus::Expired
            && h.status(w, txn(2)) == TxnStatus::Settled
            && h.status(w, txn(3)) != TxnStatus::Held
            // The expiry events come before anything else the command did.
            && matches!(first, Some(Event::OutboundExpired { txn: t, .. }) if t == txn(1));
        if !ok {
            failures.push(format!("{name}: first event {first:?}"));
        }
        h.assert_replay_matches();
    }
    assert!(
        failures.is_empty(),
        "due items not expired first by: {failures:#?}"
    );
}

/// The same rule, for the commands that return before reaching the wallet's
/// expiry: a settings change and a transfer refused for its destination.
#[test]
fn settings_changes_and_refused_transfers_also_expire_due_items_first() {
    let (w, v) = (wal(1), wal(2));
    let commands: Vec<(&str, Op)> = vec![
        (
            "update settings",
            Op::UpdateSettings {
                wallet: w,
                patch: SettingsPatch {
                    name: Some("renamed".to_owned()),
                    ..Default::default()
                },
            },
        ),
        (
            "transfer to an unknown wallet",
            transfer_op(w, wal(77), txn(50), "USD", "1"),
        ),
        (
            "transfer to a wallet without the asset",
            transfer_op(w, v, txn(50), "USD", "1"),
        ),
        ("transfer to itself", transfer_op(w, w, txn(50), "USD", "1")),
    ];
    let mut failures = Vec::new();
    for (name, op) in commands {
        let mut h = Harness::new();
        funded(&mut h, w, "USD", "30");
        h.open(v, &["EUR"]);
        let q = IfInsufficient::Queue;
        h.run(debit_full(w, txn(1), "USD", "40", q, Some(5_000)))
            .unwrap();
        let _ = run_at(&mut h, 6_000, op);
        if h.status(w, txn(1)) != TxnStatus::Expired {
            failures.push(name);
        }
        h.assert_replay_matches();
    }
    assert!(
        failures.is_empty(),
        "at 6000, these did not expire an item due at 5000: {failures:?}"
    );
}

#[test]
fn a_full_queue_refuses_new_items_with_queue_full() {
    let config = EngineConfig {
        limits: Limits {
            max_queue_depth: 2,
            ..Limits::default()
        },
        ..EngineConfig::default()
    };
    let mut h = Harness::with_config(config);
    let (w, v) = (wal(1), wal(2));
    funded(&mut h, w, "USD", "5");
    h.open(v, &["USD", "EUR"]);
    h.debit(w, txn(1), "USD", "10").unwrap();
    h.debit(w, txn(2), "USD", "1").unwrap();
    for op in [
        debit_op(w, txn(3), "USD", "1"),
        transfer_op(w, v, txn(4), "USD", "1"),
        convert_op(w, v, txn(5), "USD", "EUR", "1", "1"),
    ] {
        let e = refused(&mut h, op.clone());
        assert_eq!(
            e,
            Reject::QueueFull {
                wallet: w,
                depth: 2
            },
            "{op:?}"
        );
        assert_eq!(e.code(), "queue_full");
    }
    // Reservations do not queue; the queue of another asset is not full.
    h.open(wal(3), &["USD", "EUR"]);
    h.credit(wal(3), txn(6), "EUR", "1").unwrap();
    h.debit(wal(3), txn(7), "USD", "1").unwrap();
    h.debit(wal(3), txn(8), "USD", "1").unwrap();
    h.debit(wal(3), txn(9), "EUR", "1").unwrap();
    assert_eq!(h.status(wal(3), txn(9)), TxnStatus::Settled);
    // Once the queue shrinks, a new item is accepted again.
    h.run(cancel_op(w, txn(2))).unwrap();
    h.debit(w, txn(10), "USD", "1").unwrap();
    assert_eq!(queue_order(&h, w, "USD"), [txn(1), txn(10)]);
    h.assert_replay_matches();
}

#[test]
fn each_asset_of_a_wallet_has_its_own_fifo_queue() {
    let mut h = Harness::new();
    let w = wal(1);
    h.open(w, &["USD", "EUR"]);
    h.credit(w, txn(1), "EUR", "10").unwrap();
    h.debit(w, txn(2), "USD", "100").unwrap();
    h.debit(w, txn(3), "EUR", "5").unwrap();
    assert_eq!(h.status(w, txn(2)), TxnStatus::AwaitingFunds);
    assert_eq!(
        h.status(w, txn(3)),
        TxnStatus::Settled,
        "a blocked USD queue does not block EUR"
    );
    assert_bal(
        &h,
        w,
        "USD",
        ["0.00", "0.00", "0.00", "100.00", "100.00", "0.00"],
    );
    assert_bal(
        &h,
        w,
        "EUR",
        ["5.00", "0.00", "0.00", "0.00", "0.00", "5.00"],
    );
    h.assert_replay_matches();
}

// ---------------------------------------------------------------------------
// Reservations
// ---------------------------------------------------------------------------

#[test]
fn a_reservation_is_granted_iff_available_covers_it() {
    let mut h = Harness::new();
    let w = wal(1);
    funded(&mut h, w, "USD", "100");
    h.run(reserve_op(w, txn(1), "USD", "60", None)).unwrap();
    assert_eq!(h.status(w, txn(1)), TxnStatus::Held);
    let e = refused(&mut h, reserve_op(w, txn(2), "USD", "40.01", None));
    assert!(matches!(e, Reject::InsufficientFunds(_)), "{e:?}");
    assert!(!has_txn(&h, w, txn(2)));
    h.run(reserve_op(w, txn(3), "USD", "40", None)).unwrap();
    assert_bal(
        &h,
        w,
        "USD",
        ["100.00", "100.00", "0.00", "0.00", "100.00", "0.00"],
    );
    h.assert_replay_matches();
}

#[test]
fn queued_items_count_against_a_reservation() {
    let mut h = Harness::new();
    let w = wal(1);
    funded(&mut h, w, "USD", "100");
    h.run(reserve_op(w, txn(1), "USD", "50", None)).unwrap();
    h.debit(w, txn(2), "USD", "60").unwrap();
    assert_eq!(h.status(w, txn(2)), TxnStatus::AwaitingFunds);
    // cash 100 - reserved 50 - queued 60 < 0: nothing is available, although
    // cash - reserved is 50.
    let e = refused(&mut h, reserve_op(w, txn(3), "USD", "0.01", None));
    assert!(matches!(e, Reject::InsufficientFunds(_)), "{e:?}");
    // Pending money is not available either.
    let mut h2 = Harness::new();
    h2.open(w, &["USD"]);
    h2.run(pending_op(w, txn(1), "USD", "50")).unwrap();
    let e = refused(&mut h2, reserve_op(w, txn(2), "USD", "1", None));
    assert!(matches!(e, Reject::InsufficientFunds(_)), "{e:?}");
    h.assert_replay_matches();
    h2.assert_replay_matches();
}

#[test]
fn held_money_cannot_be_spent_by_debits() {
    let mut h = Harness::new();
    let w = wal(1);
    funded(&mut h, w, "USD", "100");
    h.run(reserve_op(w, txn(1), "USD", "90", None)).unwrap();
    h.debit(w, txn(2), "USD", "20").unwrap();
    assert_eq!(h.status(w, txn(2)), TxnStatus::AwaitingFunds);
    let e = refused(
        &mut h,
        debit_full(w, txn(3), "USD", "10.01", IfInsufficient::Reject, None),
    );
    assert!(matches!(e, Reject::InsufficientFunds(_)), "{e:?}");
    assert_bal(
        &h,
        w,
        "USD",
        ["100.00", "90.00", "0.00", "20.00", "110.00", "0.00"],
    );
    h.assert_replay_matches();
}

#[test]
fn a_capture_in_full_takes_the_whole_hold_out_of_cash() {
    let mut h = Harness::new();
    let w = wal(1);
    funded(&mut h, w, "USD", "100");
    h.run(reserve_op(w, txn(1), "USD", "30", None)).unwrap();
    assert_eq!(h.run(capture_op(w, txn(1), None)), Ok(Done::Txn(txn(1))));
    assert_eq!(h.status(w, txn(1)), TxnStatus::Captured);
    assert_eq!(
        h.ledger.wallet(w).unwrap().txn(txn(1)).unwrap().captured(),
        Some(d("30.00"))
    );
    assert_bal(
        &h,
        w,
        "USD",
        ["70.00", "0.00", "0.00", "0.00", "0.00", "70.00"],
    );
    let audit = h
        .ledger
        .audit()
        .into_iter()
        .find(|a| a.asset == code("USD"))
        .unwrap();
    assert_eq!(
        (audit.credited, audit.debited, audit.cash),
        (10_000, 3_000, 7_000)
    );
    // Capturing exactly the held amount is a full capture.
    h.run(reserve_op(w, txn(2), "USD", "10", None)).unwrap();
    h.run(capture_op(w, txn(2), Some("10.000"))).unwrap();
    assert_bal(
        &h,
        w,
        "USD",
        ["60.00", "0.00", "0.00", "0.00", "0.00", "60.00"],
    );
    h.assert_replay_matches();
}

#[test]
fn a_partial_capture_takes_its_amount_and_releases_the_rest() {
    let mut h = Harness::new();
    let w = wal(1);
    funded(&mut h, w, "USD", "100");
    h.run(reserve_op(w, txn(1), "USD", "30", None)).unwrap();
    h.run(capture_op(w, txn(1), Some("12.5"))).unwrap();
    let t = h.ledger.wallet(w).unwrap().txn(txn(1)).unwrap().clone();
    assert_eq!(t.status, TxnStatus::Captured);
    assert_eq!(
        t.captured().map(|c| c.to_string()),
        Some("12.50".to_owned())
    );
    assert_bal(
        &h,
        w,
        "USD",
        ["87.50", "0.00", "0.00", "0.00", "0.00", "87.50"],
    );
    h.assert_replay_matches();
}

#[test]
fn capturing_more_than_the_hold_is_invalid_amount() {
    let mut h = Harness::new();
    let w = wal(1);
    funded(&mut h, w, "USD", "100");
    h.run(reserve_op(w, txn(1), "USD", "30", None)).unwrap();
    let e = refused(&mut h, capture_op(w, txn(1), Some("30.01")));
    assert!(matches!(e, Reject::InvalidAmount(_)), "{e:?}");
    assert_eq!(h.status(w, txn(1)), TxnStatus::Held);
    assert_bal(
        &h,
        w,
        "USD",
        ["100.00", "30.00", "0.00", "0.00", "30.00", "70.00"],
    );
    h.assert_replay_matches();
}

#[test]
fn capturing_or_releasing_a_hold_that_ended_is_invalid_state() {
    let mut h = Harness::new();
    let w = wal(1);
    funded(&mut h, w, "USD", "100");
    h.run(reserve_op(w, txn(1), "USD", "10", None)).unwrap();
    h.run(release_op(w, txn(1))).unwrap();
    h.run(reserve_op(w, txn(2), "USD", "10", None)).unwrap();
    h.run(capture_op(w, txn(2), Some("4"))).unwrap();
    h.debit(w, txn(3), "USD", "1").unwrap();
    for op in [
        capture_op(w, txn(1), None),
        capture_op(w, txn(1), Some("1")),
        release_op(w, txn(1)),
        capture_op(w, txn(2), None),
        release_op(w, txn(2)),
        // Not a reservation.
        capture_op(w, txn(3), None),
        release_op(w, txn(3)),
    ] {
        let e = refused(&mut h, op.clone());
        assert!(matches!(e, Reject::InvalidState(_)), "{op:?}: {e:?}");
    }
    assert_bal(
        &h,
        w,
        "USD",
        ["95.00", "0.00", "0.00", "0.00", "0.00", "95.00"],
    );
    h.assert_replay_matches();
}

#[test]
fn a_release_returns_the_held_money_to_available() {
    let mut h = Harness::new();
    let w = wal(1);
    funded(&mut h, w, "USD", "100");
    h.run(reserve_op(w, txn(1), "USD", "30", None)).unwrap();
    assert_eq!(h.run(release_op(w, txn(1))), Ok(Done::Txn(txn(1))));
    assert_eq!(h.status(w, txn(1)), TxnStatus::Released);
    assert_eq!(
        h.ledger.wallet(w).unwrap().txn(txn(1)).unwrap().captured(),
        None
    );
    assert_bal(
        &h,
        w,
        "USD",
        ["100.00", "0.00", "0.00", "0.00", "0.00", "100.00"],
    );
    h.assert_replay_matches();
}

#[test]
fn a_reservation_with_expires_at_is_released_by_itself() {
    let mut h = Harness::new();
    let w = wal(1);
    funded(&mut h, w, "USD", "100");
    h.run(reserve_op(w, txn(1), "USD", "80", Some(5_000)))
        .unwrap();
    h.debit(w, txn(2), "USD", "50").unwrap();
    run_at(&mut h, 4_999, expire_op(w)).unwrap();
    assert_eq!(h.status(w, txn(1)), TxnStatus::Held);
    run_at(&mut h, 5_000, expire_op(w)).unwrap();
    assert_eq!(h.status(w, txn(1)), TxnStatus::Released);
    assert!(h.events.iter().any(|e| matches!(
        e,
        Event::ReservationReleased { txn: t, expired: true, .. } if *t == txn(1)
    )));
    assert_eq!(
        h.status(w, txn(2)),
        TxnStatus::Settled,
        "the release drained the queue"
    );
    assert_bal(
        &h,
        w,
        "USD",
        ["50.00", "0.00", "0.00", "0.00", "0.00", "50.00"],
    );
    assert!(matches!(
        refused(&mut h, capture_op(w, txn(1), None)),
        Reject::InvalidState(_)
    ));
    h.assert_replay_matches();
}

// ---------------------------------------------------------------------------
// Transfers
// ---------------------------------------------------------------------------

#[test]
fn a_transfer_source_leg_queues_in_the_source_fifo_like_a_debit() {
    let mut h = Harness::new();
    let (a, b) = (wal(1), wal(2));
    funded(&mut h, a, "USD", "30");
    h.open(b, &["USD"]);
    h.debit(a, txn(1), "USD", "40").unwrap();
    h.run(transfer_op(a, b, txn(2), "USD", "10")).unwrap();
    assert_eq!(
        h.status(a, txn(2)),
        TxnStatus::AwaitingFunds,
        "behind the 40, although 30 covers it"
    );
    assert_eq!(queue_order(&h, a, "USD"), [txn(1), txn(2)]);
    assert!(!has_txn(&h, b, txn(2)));
    assert_eq!(h.ledger.in_flight().len(), 0);
    assert_bal(
        &h,
        a,
        "USD",
        ["30.00", "0.00", "0.00", "50.00", "50.00", "0.00"],
    );
    h.credit(a, txn(3), "USD", "20").unwrap();
    assert_eq!(h.status(a, txn(1)), TxnStatus::Settled);
    assert_eq!(h.status(a, txn(2)), TxnStatus::Settled);
    h.settle_flights();
    assert_eq!(h.status(b, txn(2)), TxnStatus::Settled);
    assert_bal(
        &h,
        a,
        "USD",
        ["0.00", "0.00", "0.00", "0.00", "0.00", "0.00"],
    );
    assert_bal(
        &h,
        b,
        "USD",
        ["10.00", "0.00", "0.00", "0.00", "0.00", "10.00"],
    );
    h.assert_replay_matches();
}

#[test]
fn transfer_money_is_in_flight_between_source_settle_and_delivery() {
    let mut h = Harness::new();
    let (a, b) = (wal(1), wal(2));
    funded(&mut h, a, "USD", "100");
    h.open(b, &["USD"]);
    h.run(transfer_op(a, b, txn(1), "USD", "25")).unwrap();
    assert_eq!(h.status(a, txn(1)), TxnStatus::Settled);
    // Left the source, not yet at the destination: in flight, exactly once.
    assert_bal(
        &h,
        a,
        "USD",
        ["75.00", "0.00", "0.00", "0.00", "0.00", "75.00"],
    );
    assert_bal(
        &h,
        b,
        "USD",
        ["0.00", "0.00", "0.00", "0.00", "0.00", "0.00"],
    );
    match flight(&h, txn(1)) {
        Some(Message::Deliver(leg)) => {
            assert_eq!(
                (leg.from, leg.to, leg.asset, leg.amount),
                (a, b, code("USD"), d("25.00"))
            );
        }
        other => panic!("expected a Deliver in flight, got {other:?}"),
    }
    assert_eq!(audit_in_flight(&h, "USD"), 2_500);
    h.assert_replay_matches();
    deliver_one(&mut h, txn(1));
    assert_bal(
        &h,
        b,
        "USD",
        ["25.00", "0.00", "0.00", "0.00", "0.00", "25.00"],
    );
    let t = h.ledger.wallet(b).unwrap().txn(txn(1)).unwrap().clone();
    assert_eq!(
        (t.kind, t.status, t.direction, t.counterparty),
        (
            TxnKind::Transfer,
            TxnStatus::Settled,
            Some(Direction::In),
            Some(a)
        )
    );
    assert_eq!(audit_in_flight(&h, "USD"), 0);
    h.assert_replay_matches();
}

#[test]
fn a_delivery_credits_the_destination_and_drains_its_queue() {
    let mut h = Harness::new();
    let (a, b) = (wal(1), wal(2));
    funded(&mut h, a, "USD", "100");
    h.open(b, &["USD"]);
    h.debit(b, txn(1), "USD", "30").unwrap();
    h.debit(b, txn(2), "USD", "30").unwrap();
    h.run(transfer_op(a, b, txn(3), "USD", "50")).unwrap();
    assert_eq!(h.status(b, txn(1)), TxnStatus::AwaitingFunds);
    deliver_one(&mut h, txn(3));
    assert_eq!(h.status(b, txn(1)), TxnStatus::Settled);
    assert_eq!(h.status(b, txn(2)), TxnStatus::AwaitingFunds);
    assert_bal(
        &h,
        b,
        "USD",
        ["20.00", "0.00", "0.00", "30.00", "30.00", "0.00"],
    );
    h.assert_replay_matches();
}

#[test]
fn a_receipt_completes_the_transfer_and_carries_no_money() {
    let mut h = Harness::new();
    let (a, b) = (wal(1), wal(2));
    funded(&mut h, a, "USD", "10");
    h.open(b, &["USD"]);
    h.run(transfer_op(a, b, txn(1), "USD", "10")).unwrap();
    assert_eq!(
        h.ledger
            .wallet(a)
            .unwrap()
            .awaiting_receipt()
            .collect::<Vec<_>>(),
        [txn(1)]
    );
    deliver_one(&mut h, txn(1));
    assert_eq!(
        flight(&h, txn(1)),
        Some(Message::Receipt { txn: txn(1), to: a })
    );
    assert_eq!(audit_in_flight(&h, "USD"), 0, "a receipt carries no money");
    // The source cannot close while its transfer is unacknowledged.
    let e = refused(&mut h, status_op(a, WalletStatus::Closed));
    assert!(matches!(e, Reject::InvalidState(_)), "{e:?}");
    deliver_one(&mut h, txn(1));
    assert_eq!(h.ledger.in_flight().len(), 0);
    assert_eq!(h.ledger.wallet(a).unwrap().awaiting_receipt().count(), 0);
    assert_eq!(h.status(a, txn(1)), TxnStatus::Settled);
    assert!(h.events.iter().any(|e| matches!(e, Event::TransferDelivered { wallet, txn: t, .. } if *wallet == a && *t == txn(1))));
    h.run(status_op(a, WalletStatus::Closed)).unwrap();
    // Nothing left to deliver.
    h.now += 1;
    assert!(matches!(
        h.ledger.deliver(txn(1), at(h.now), &mut h.events),
        Err(Reject::NotFound(_))
    ));
    h.assert_replay_matches();
}

#[test]
fn a_transfer_to_itself_is_invalid_request() {
    let mut h = Harness::new();
    let a = wal(1);
    funded(&mut h, a, "USD", "10");
    let e = refused(&mut h, transfer_op(a, a, txn(1), "USD", "1"));
    assert!(matches!(e, Reject::InvalidRequest(_)), "{e:?}");
    h.assert_replay_matches();
}

#[test]
fn a_transfer_to_or_from_an_unknown_wallet_is_not_found() {
    let mut h = Harness::new();
    let a = wal(1);
    funded(&mut h, a, "USD", "10");
    let e = refused(&mut h, transfer_op(a, wal(9), txn(1), "USD", "1"));
    assert!(matches!(e, Reject::NotFound(_)), "{e:?}");
    let e = refused(&mut h, transfer_op(wal(9), a, txn(2), "USD", "1"));
    assert!(matches!(e, Reject::NotFound(_)), "{e:?}");
    h.assert_replay_matches();
}

#[test]
fn a_transfer_to_a_wallet_without_the_asset_is_unknown_asset() {
    let mut h = Harness::new();
    let (a, b) = (wal(1), wal(2));
    funded(&mut h, a, "USD", "10");
    h.open(b, &["EUR"]);
    let e = refused(&mut h, transfer_op(a, b, txn(1), "USD", "1"));
    assert!(matches!(e, Reject::UnknownAsset(_)), "{e:?}");
    // Nor from a source without it.
    let e = refused(&mut h, transfer_op(b, a, txn(2), "USD", "1"));
    assert!(matches!(e, Reject::UnknownAsset(_)), "{e:?}");
    h.assert_replay_matches();
}

#[test]
fn a_transfer_to_a_suspended_or_closed_destination_is_refused_at_submit() {
    let mut h = Harness::new();
    let (a, b, c, r) = (wal(1), wal(2), wal(3), wal(4));
    funded(&mut h, a, "USD", "10");
    h.open(b, &["USD"]);
    h.open(c, &["USD"]);
    h.open(r, &["USD"]);
    h.run(status_op(b, WalletStatus::Suspended)).unwrap();
    h.run(status_op(c, WalletStatus::Closed)).unwrap();
    h.run(status_op(r, WalletStatus::Restricted)).unwrap();
    assert_eq!(
        refused(&mut h, transfer_op(a, b, txn(1), "USD", "1")),
        Reject::WalletSuspended(b)
    );
    assert_eq!(
        refused(&mut h, transfer_op(a, c, txn(2), "USD", "1")),
        Reject::WalletClosed(c)
    );
    assert!(!has_txn(&h, a, txn(1)) && !has_txn(&h, a, txn(2)));
    // A restricted wallet still accepts credits, transfers included.
    h.run(transfer_op(a, r, txn(3), "USD", "1")).unwrap();
    h.settle_flights();
    assert_eq!(h.status(r, txn(3)), TxnStatus::Settled);
    assert_bal(
        &h,
        r,
        "USD",
        ["1.00", "0.00", "0.00", "0.00", "0.00", "1.00"],
    );
    h.assert_replay_matches();
}

/// Checks the balances of a bounce scenario: `a` started with 10, sent 10
/// to `b`, which refused it.
fn assert_bounced(h: &Harness, a: WalletId, b: WalletId, t: TxnId) {
    assert_eq!(h.status(a, t), TxnStatus::Returned);
    assert_eq!(h.status(b, t), TxnStatus::Returned);
    let rec = h.ledger.wallet(b).unwrap().txn(t).unwrap().clone();
    assert_eq!(
        (rec.direction, rec.counterparty),
        (Some(Direction::In), Some(a))
    );
    assert_bal(
        h,
        a,
        "USD",
        ["10.00", "0.00", "0.00", "0.00", "0.00", "10.00"],
    );
    assert_eq!(h.balance(b, "USD").cash, d("0"));
    assert_eq!(h.ledger.in_flight().len(), 0);
    assert_eq!(h.ledger.wallet(a).unwrap().awaiting_receipt().count(), 0);
    assert_eq!(audit_in_flight(h, "USD"), 0);
}

#[test]
fn a_destination_suspended_while_the_transfer_was_queued_bounces_it_back() {
    let mut h = Harness::new();
    let (a, b) = (wal(1), wal(2));
    h.open(a, &["USD"]);
    h.open(b, &["USD"]);
    h.run(transfer_op(a, b, txn(1), "USD", "10")).unwrap();
    assert_eq!(h.status(a, txn(1)), TxnStatus::AwaitingFunds);
    h.run(status_op(b, WalletStatus::Suspended)).unwrap();
    h.credit(a, txn(2), "USD", "10").unwrap();
    assert_eq!(h.status(a, txn(1)), TxnStatus::Settled);
    assert_eq!(audit_in_flight(&h, "USD"), 1_000);
    deliver_one(&mut h, txn(1));
    assert!(
        matches!(flight(&h, txn(1)), Some(Message::Return(_))),
        "the money is on its way back"
    );
    assert_eq!(audit_in_flight(&h, "USD"), 1_000);
    assert_eq!(h.balance(a, "USD").cash, d("0"));
    assert_eq!(h.balance(b, "USD").cash, d("0"));
    deliver_one(&mut h, txn(1));
    assert_bounced(&h, a, b, txn(1));
    h.assert_replay_matches();
}

#[test]
fn a_destination_closed_while_the_transfer_was_queued_bounces_it_back() {
    let mut h = Harness::new();
    let (a, b) = (wal(1), wal(2));
    h.open(a, &["USD"]);
    h.open(b, &["USD"]);
    h.run(transfer_op(a, b, txn(1), "USD", "10")).unwrap();
    h.run(status_op(b, WalletStatus::Closed)).unwrap();
    h.credit(a, txn(2), "USD", "10").unwrap();
    h.settle_flights();
    assert_bounced(&h, a, b, txn(1));
    assert_eq!(h.ledger.wallet(b).unwrap().status, WalletStatus::Closed);
    h.assert_replay_matches();
}

#[test]
fn a_destination_suspended_while_the_money_was_in_flight_bounces_it_back() {
    let mut h = Harness::new();
    let (a, b) = (wal(1), wal(2));
    funded(&mut h, a, "USD", "10");
    h.open(b, &["USD"]);
    h.run(transfer_op(a, b, txn(1), "USD", "10")).unwrap();
    h.run(status_op(b, WalletStatus::Suspended)).unwrap();
    h.settle_flights();
    assert_bounced(&h, a, b, txn(1));
    // The returned money funds the source's queue again.
    h.debit(a, txn(2), "USD", "10").unwrap();
    assert_eq!(h.status(a, txn(2)), TxnStatus::Settled);
    h.assert_replay_matches();
}

#[test]
fn returned_money_drains_the_source_queue() {
    let mut h = Harness::new();
    let (a, b) = (wal(1), wal(2));
    funded(&mut h, a, "USD", "10");
    h.open(b, &["USD"]);
    h.run(transfer_op(a, b, txn(1), "USD", "10")).unwrap();
    h.debit(a, txn(2), "USD", "7").unwrap();
    assert_eq!(h.status(a, txn(2)), TxnStatus::AwaitingFunds);
    h.run(status_op(b, WalletStatus::Suspended)).unwrap();
    h.settle_flights();
    assert_eq!(h.status(a, txn(1)), TxnStatus::Returned);
    assert_eq!(h.status(a, txn(2)), TxnStatus::Settled);
    assert_bal(
        &h,
        a,
        "USD",
        ["3.00", "0.00", "0.00", "0.00", "0.00", "3.00"],
    );
    h.assert_replay_matches();
}

#[test]
fn a_delivery_past_the_destination_balance_limit_bounces_it_back() {
    let mut h = Harness::new();
    let (a, b) = (wal(1), wal(2));
    funded(&mut h, a, "USD", "10");
    h.open(b, &["USD"]);
    let max = "99999999999999999999999999.99";
    h.credit(b, txn(9), "USD", max).unwrap();
    h.run(transfer_op(a, b, txn(1), "USD", "10")).unwrap();
    h.settle_flights();
    assert_eq!(h.status(a, txn(1)), TxnStatus::Returned);
    assert_eq!(h.status(b, txn(1)), TxnStatus::Returned);
    assert_bal(
        &h,
        a,
        "USD",
        ["10.00", "0.00", "0.00", "0.00", "0.00", "10.00"],
    );
    assert_eq!(h.balance(b, "USD").cash.to_string(), max);
    h.assert_replay_matches();
}

#[test]
fn a_pending_credit_that_would_pass_the_balance_limit_stays_pending_as_a_conflict() {
    let mut h = Harness::new();
    let a = wal(1);
    h.open(a, &["USD"]);
    h.run(pending_op(a, txn(1), "USD", "10")).unwrap();
    let max = "99999999999999999999999999.99";
    h.credit(a, txn(2), "USD", max).unwrap();
    // 409 invalid_state, not 400 invalid_amount: the request named no amount.
    match h.run(settle_op(a, txn(1))) {
        Err(Reject::InvalidState(why)) => assert!(why.contains("limit"), "{why}"),
        other => panic!("settling past the limit: {other:?}"),
    }
    assert_eq!(h.status(a, txn(1)), TxnStatus::Pending);
    // It can still be rejected, and is then gone from `pending`.
    h.run(reject_op(a, txn(1))).unwrap();
    assert_eq!(h.balance(a, "USD").pending.to_string(), "0.00");
    assert_eq!(h.balance(a, "USD").cash.to_string(), max);
    h.assert_replay_matches();
}

#[test]
fn a_wallet_that_cannot_close_says_which_balance_holds_it_open() {
    let mut h = Harness::new();
    let a = wal(1);
    h.open(a, &["USD"]);
    h.run(pending_op(a, txn(1), "USD", "12.34")).unwrap();
    match h.run(status_op(a, WalletStatus::Closed)) {
        Err(Reject::InvalidState(why)) => assert!(why.ends_with("(pending)"), "{why}"),
        other => panic!("closing with a pending credit: {other:?}"),
    }
    h.credit(a, txn(2), "USD", "1").unwrap();
    match h.run(status_op(a, WalletStatus::Closed)) {
        Err(Reject::InvalidState(why)) => assert!(why.ends_with("(cash, pending)"), "{why}"),
        other => panic!("closing with cash and a pending credit: {other:?}"),
    }
}

#[test]
fn crossing_transfers_both_complete() {
    let mut h = Harness::new();
    let (a, b) = (wal(1), wal(2));
    funded(&mut h, a, "USD", "10");
    funded(&mut h, b, "USD", "20");
    h.run(transfer_op(a, b, txn(1), "USD", "10")).unwrap();
    h.run(transfer_op(b, a, txn(2), "USD", "20")).unwrap();
    assert_eq!(h.ledger.in_flight().len(), 2);
    assert_eq!(audit_in_flight(&h, "USD"), 3_000);
    h.settle_flights();
    for (w, t) in [(a, 1), (b, 1), (a, 2), (b, 2)] {
        assert_eq!(h.status(w, txn(t)), TxnStatus::Settled);
    }
    assert_bal(
        &h,
        a,
        "USD",
        ["20.00", "0.00", "0.00", "0.00", "0.00", "20.00"],
    );
    assert_bal(
        &h,
        b,
        "USD",
        ["10.00", "0.00", "0.00", "0.00", "0.00", "10.00"],
    );
    assert_eq!(h.ledger.in_flight().len(), 0);
    // And crossing transfers that each wait for the other's money.
    let mut h = Harness::new();
    h.open(a, &["USD"]);
    h.open(b, &["USD"]);
    h.run(transfer_op(a, b, txn(1), "USD", "5")).unwrap();
    h.run(transfer_op(b, a, txn(2), "USD", "5")).unwrap();
    h.credit(a, txn(3), "USD", "5").unwrap();
    h.settle_flights();
    h.settle_flights();
    for (w, t) in [(a, 1), (b, 1), (a, 2), (b, 2)] {
        assert_eq!(h.status(w, txn(t)), TxnStatus::Settled);
    }
    assert_bal(
        &h,
        a,
        "USD",
        ["5.00", "0.00", "0.00", "0.00", "0.00", "5.00"],
    );
    assert_bal(
        &h,
        b,
        "USD",
        ["0.00", "0.00", "0.00", "0.00", "0.00", "0.00"],
    );
    h.assert_replay_matches();
}

#[test]
fn a_return_lands_at_a_suspended_source() {
    let mut h = Harness::new();
    let (a, b) = (wal(1), wal(2));
    funded(&mut h, a, "USD", "10");
    h.open(b, &["USD"]);
    h.run(transfer_op(a, b, txn(1), "USD", "10")).unwrap();
    h.debit(a, txn(2), "USD", "4").unwrap();
    h.run(status_op(b, WalletStatus::Suspended)).unwrap();
    h.run(status_op(a, WalletStatus::Suspended)).unwrap();
    h.settle_flights();
    assert_bounced_cash(&h, a, b, txn(1), "10.00");
    // The returned money is in cash, but a suspended queue does not drain.
    assert_eq!(h.status(a, txn(2)), TxnStatus::AwaitingFunds);
    h.run(status_op(a, WalletStatus::Active)).unwrap();
    assert_eq!(h.status(a, txn(2)), TxnStatus::Settled);
    assert_bal(
        &h,
        a,
        "USD",
        ["6.00", "0.00", "0.00", "0.00", "0.00", "6.00"],
    );
    h.assert_replay_matches();
}

fn assert_bounced_cash(h: &Harness, a: WalletId, b: WalletId, t: TxnId, a_cash: &str) {
    assert_eq!(h.status(a, t), TxnStatus::Returned);
    assert_eq!(h.status(b, t), TxnStatus::Returned);
    assert_eq!(h.balance(a, "USD").cash.to_string(), a_cash);
    assert_eq!(h.ledger.in_flight().len(), 0);
}

#[test]
fn a_queued_transfer_cancelled_or_expired_never_reaches_the_destination() {
    let mut h = Harness::new();
    let (a, b) = (wal(1), wal(2));
    h.open(a, &["USD"]);
    h.open(b, &["USD"]);
    let q = IfInsufficient::Queue;
    h.run(transfer_full(a, b, txn(1), "USD", "10", q, None))
        .unwrap();
    h.run(transfer_full(a, b, txn(2), "USD", "10", q, Some(5_000)))
        .unwrap();
    h.run(cancel_op(a, txn(1))).unwrap();
    run_at(&mut h, 5_000, expire_op(a)).unwrap();
    assert_eq!(h.status(a, txn(1)), TxnStatus::Cancelled);
    assert_eq!(h.status(a, txn(2)), TxnStatus::Expired);
    h.credit(a, txn(3), "USD", "20").unwrap();
    h.settle_flights();
    assert!(!has_txn(&h, b, txn(1)) && !has_txn(&h, b, txn(2)));
    assert_bal(
        &h,
        a,
        "USD",
        ["20.00", "0.00", "0.00", "0.00", "0.00", "20.00"],
    );
    assert_bal(
        &h,
        b,
        "USD",
        ["0.00", "0.00", "0.00", "0.00", "0.00", "0.00"],
    );
    h.assert_replay_matches();
}

/// `message`: "money in flight must land somewhere". A return must land at
/// its source even when a credit received meanwhile brought the source's
/// balance close to its bound (or that credit must have been refused).
#[test]
fn a_return_always_lands_even_near_the_source_balance_limit() {
    let mut h = Harness::new();
    let (a, b) = (wal(1), wal(2));
    funded(&mut h, a, "USD", "10");
    h.open(b, &["USD"]);
    h.run(transfer_op(a, b, txn(1), "USD", "10")).unwrap();
    let _ = h.credit(a, txn(2), "USD", "99999999999999999999999999.99");
    h.run(status_op(b, WalletStatus::Suspended)).unwrap();
    h.now += 1;
    let r = h.ledger.deliver_all(at(h.now), &mut h.events);
    assert!(
        r.is_ok(),
        "the returned money found no place to land: {r:?}"
    );
    assert_eq!(h.ledger.in_flight().len(), 0, "money stuck in flight");
    h.ledger.check_invariants().unwrap();
    assert_eq!(h.status(a, txn(1)), TxnStatus::Returned);
}

/// A transaction id is the transfer's identity in both wallets, and a
/// receiver ignores a delivery whose id it already holds (`message`). A
/// transfer whose id the destination already uses must therefore be refused
/// at submit; it must never be accepted and then stick in flight.
#[test]
fn a_transfer_whose_id_the_destination_already_uses_never_sticks_in_flight() {
    let mut h = Harness::new();
    let (a, b) = (wal(1), wal(2));
    funded(&mut h, a, "USD", "10");
    h.open(b, &["USD"]);
    h.credit(b, txn(7), "USD", "5").unwrap();
    match h.run(transfer_op(a, b, txn(7), "USD", "10")) {
        Err(Reject::InvalidRequest(_)) => {
            assert!(!has_txn(&h, a, txn(7)));
        }
        Ok(_) => {
            h.now += 1;
            let delivered = h.ledger.deliver_all(at(h.now), &mut h.events);
            assert!(
                delivered.is_ok(),
                "accepted transfer cannot be delivered: {delivered:?}"
            );
            assert_eq!(h.ledger.in_flight().len(), 0);
            let b_cash = h.balance(b, "USD").cash;
            let a_cash = h.balance(a, "USD").cash;
            assert!(
                (b_cash, a_cash) == (d("15"), d("0")) || (b_cash, a_cash) == (d("5"), d("10")),
                "money must land in exactly one place: a {a_cash}, b {b_cash}"
            );
        }
        Err(e) => panic!("unexpected refusal {e:?}"),
    }
    h.ledger.check_invariants().unwrap();
}

// ---------------------------------------------------------------------------
// Conversions
// ---------------------------------------------------------------------------

#[test]
fn a_conversion_between_two_wallets_rounds_down_and_never_creates_the_remainder() {
    let mut h = Harness::new();
    let (a, b) = (wal(1), wal(2));
    funded(&mut h, a, "USD", "10.01");
    h.open(b, &["EUR"]);
    // 10.01 x 0.333 = 3.33333 -> 3.33 EUR; the 0.00333 is never created.
    h.run(convert_op(a, b, txn(1), "USD", "EUR", "10.01", "0.333"))
        .unwrap();
    let t = h.ledger.wallet(a).unwrap().txn(txn(1)).unwrap().clone();
    assert_eq!(
        (t.kind, t.status),
        (TxnKind::Conversion, TxnStatus::Settled)
    );
    let terms = t.conversion().unwrap();
    assert_eq!(
        (terms.buy_asset, terms.buy_amount.to_string()),
        (code("EUR"), "3.33".to_owned())
    );
    assert_bal(
        &h,
        a,
        "USD",
        ["0.00", "0.00", "0.00", "0.00", "0.00", "0.00"],
    );
    // The buy side is what is in flight.
    assert_eq!(audit_in_flight(&h, "EUR"), 333);
    assert_eq!(audit_in_flight(&h, "USD"), 0);
    h.settle_flights();
    assert_eq!(h.status(b, txn(1)), TxnStatus::Settled);
    assert_bal(
        &h,
        b,
        "EUR",
        ["3.33", "0.00", "0.00", "0.00", "0.00", "3.33"],
    );
    let audit = h.ledger.audit();
    assert!(audit.iter().all(|x| x.ok()), "{audit:?}");
    let eur = audit.iter().find(|x| x.asset == code("EUR")).unwrap();
    assert_eq!((eur.cash, eur.converted_in, eur.in_flight), (333, 333, 0));
    let usd = audit.iter().find(|x| x.asset == code("USD")).unwrap();
    assert_eq!(
        (usd.cash, usd.credited, usd.converted_out),
        (0, 1_001, 1_001)
    );
    h.assert_replay_matches();
}

#[test]
fn a_conversion_within_one_multi_asset_wallet_settles_both_sides_at_once() {
    let mut h = Harness::new();
    let w = wal(1);
    h.open(w, &["USD", "BTC"]);
    h.credit(w, txn(1), "USD", "100").unwrap();
    h.run(convert_op(
        w,
        w,
        txn(2),
        "USD",
        "BTC",
        "100",
        "0.0000123456789",
    ))
    .unwrap();
    assert_eq!(h.status(w, txn(2)), TxnStatus::Settled);
    // 100.00 x 0.0000123456789 = 0.00123456789 -> 0.00123456 BTC.
    assert_bal(
        &h,
        w,
        "USD",
        ["0.00", "0.00", "0.00", "0.00", "0.00", "0.00"],
    );
    assert_bal(
        &h,
        w,
        "BTC",
        [
            "0.00123456",
            "0.00000000",
            "0.00000000",
            "0.00000000",
            "0.00000000",
            "0.00123456",
        ],
    );
    assert_eq!(
        h.ledger.in_flight().len(),
        0,
        "nothing in flight within one wallet"
    );
    assert_eq!(h.ledger.wallet(w).unwrap().awaiting_receipt().count(), 0);
    // A queued conversion settles when funded.
    h.run(convert_op(w, w, txn(3), "USD", "BTC", "50", "0.00001"))
        .unwrap();
    assert_eq!(h.status(w, txn(3)), TxnStatus::AwaitingFunds);
    h.credit(w, txn(4), "USD", "50").unwrap();
    assert_eq!(h.status(w, txn(3)), TxnStatus::Settled);
    assert_eq!(h.balance(w, "BTC").cash.to_string(), "0.00173456");
    assert!(h.ledger.audit().iter().all(|x| x.ok()));
    h.assert_replay_matches();
}

/// The engine's own invariant (`WalletState::check_invariants`): "nothing is
/// stuck: a drainable queue's head never fits". A conversion within one
/// wallet whose buy balance cannot take the proceeds must be refused, or must
/// not leave a fitting head stuck in the queue.
#[test]
fn a_conversion_within_one_wallet_into_a_full_balance_never_leaves_a_stuck_head() {
    let mut h = Harness::new();
    let w = wal(1);
    h.open(w, &["USD", "EUR"]);
    h.credit(w, txn(1), "EUR", "99999999999999999999999999.99")
        .unwrap();
    h.credit(w, txn(2), "USD", "10").unwrap();
    // `run` checks the invariants after the command.
    match h.run(convert_op(w, w, txn(3), "USD", "EUR", "1", "1")) {
        Err(e) => {
            assert!(matches!(e, Reject::InvalidAmount(_)), "{e:?}");
            assert!(!has_txn(&h, w, txn(3)));
        }
        Ok(_) => {
            // Accepted: once the EUR balance has room, it settles.
            h.debit(w, txn(4), "EUR", "5").unwrap();
            assert_eq!(h.status(w, txn(3)), TxnStatus::Settled);
        }
    }
    assert_bal(
        &h,
        w,
        "USD",
        ["10.00", "0.00", "0.00", "0.00", "0.00", "10.00"],
    );
    h.assert_replay_matches();
}

#[test]
fn a_conversion_to_a_wallet_without_the_buy_asset_is_unknown_asset() {
    let mut h = Harness::new();
    let (a, b) = (wal(1), wal(2));
    funded(&mut h, a, "USD", "10");
    h.open(b, &["GBP"]);
    let e = refused(&mut h, convert_op(a, b, txn(1), "USD", "EUR", "1", "0.9"));
    assert!(matches!(e, Reject::UnknownAsset(_)), "{e:?}");
    let e = refused(&mut h, convert_op(a, a, txn(2), "USD", "EUR", "1", "0.9"));
    assert!(matches!(e, Reject::UnknownAsset(_)), "{e:?}");
    let e = refused(&mut h, convert_op(a, b, txn(3), "USD", "XYZ", "1", "0.9"));
    assert!(matches!(e, Reject::UnknownAsset(_)), "{e:?}");
    h.assert_replay_matches();
}

#[test]
fn a_conversion_of_an_asset_into_itself_is_invalid_request() {
    let mut h = Harness::new();
    let (a, b) = (wal(1), wal(2));
    funded(&mut h, a, "USD", "10");
    h.open(b, &["USD"]);
    let e = refused(&mut h, convert_op(a, b, txn(1), "USD", "USD", "1", "1"));
    assert!(matches!(e, Reject::InvalidRequest(_)), "{e:?}");
    let e = refused(&mut h, convert_op(a, a, txn(2), "USD", "USD", "1", "1"));
    assert!(matches!(e, Reject::InvalidRequest(_)), "{e:?}");
    h.assert_replay_matches();
}

#[test]
fn a_conversion_that_rounds_to_zero_is_invalid_amount() {
    let mut h = Harness::new();
    let (a, b) = (wal(1), wal(2));
    funded(&mut h, a, "USD", "10");
    h.open(b, &["JPY", "EUR"]);
    // 0.01 USD x 0.1 = 0.001 EUR -> 0.00: refused, not rounded up.
    let e = refused(
        &mut h,
        convert_op(a, b, txn(1), "USD", "EUR", "0.01", "0.1"),
    );
    assert!(matches!(e, Reject::InvalidAmount(_)), "{e:?}");
    // 0.99 USD x 1 = 0.99 JPY -> 0.
    let e = refused(&mut h, convert_op(a, b, txn(2), "USD", "JPY", "0.99", "1"));
    assert!(matches!(e, Reject::InvalidAmount(_)), "{e:?}");
    // A zero or negative rate too.
    let e = refused(&mut h, convert_op(a, b, txn(3), "USD", "EUR", "1", "0"));
    assert!(matches!(e, Reject::InvalidAmount(_)), "{e:?}");
    let e = refused(&mut h, convert_op(a, b, txn(4), "USD", "EUR", "1", "-1"));
    assert!(matches!(e, Reject::InvalidAmount(_)), "{e:?}");
    h.assert_replay_matches();
}

#[test]
fn a_bounced_conversion_returns_the_sell_amount_and_conserves_both_sides() {
    let mut h = Harness::new();
    let (a, b) = (wal(1), wal(2));
    h.open(a, &["USD"]);
    h.open(b, &["EUR"]);
    h.run(convert_op(a, b, txn(1), "USD", "EUR", "10", "0.9"))
        .unwrap();
    assert_eq!(h.status(a, txn(1)), TxnStatus::AwaitingFunds);
    h.run(status_op(b, WalletStatus::Suspended)).unwrap();
    h.credit(a, txn(2), "USD", "10").unwrap();
    assert_eq!(h.status(a, txn(1)), TxnStatus::Settled);
    assert_eq!(audit_in_flight(&h, "EUR"), 900);
    h.settle_flights();
    assert_eq!(h.status(a, txn(1)), TxnStatus::Returned);
    assert_eq!(h.status(b, txn(1)), TxnStatus::Returned);
    assert_bal(
        &h,
        a,
        "USD",
        ["10.00", "0.00", "0.00", "0.00", "0.00", "10.00"],
    );
    assert_bal(
        &h,
        b,
        "EUR",
        ["0.00", "0.00", "0.00", "0.00", "0.00", "0.00"],
    );
    let audit = h.ledger.audit();
    assert!(
        audit.iter().all(|x| x.ok() && x.in_flight == 0),
        "{audit:?}"
    );
    h.assert_replay_matches();
}

// ---------------------------------------------------------------------------
// Wallet statuses
// ---------------------------------------------------------------------------

#[test]
fn restricted_allows_credits_and_forbids_new_outbound_obligations() {
    let mut h = Harness::new();
    let (w, v) = (wal(1), wal(2));
    h.open(w, &["USD", "EUR"]);
    h.open(v, &["USD", "EUR"]);
    h.credit(w, txn(1), "USD", "100").unwrap();
    h.run(status_op(w, WalletStatus::Restricted)).unwrap();
    assert_eq!(h.ledger.wallet(w).unwrap().status, WalletStatus::Restricted);
    h.credit(w, txn(2), "USD", "10").unwrap();
    h.run(pending_op(w, txn(3), "USD", "5")).unwrap();
    h.run(settle_op(w, txn(3))).unwrap();
    for op in [
        debit_op(w, txn(10), "USD", "1"),
        reserve_op(w, txn(11), "USD", "1", None),
        transfer_op(w, v, txn(12), "USD", "1"),
        convert_op(w, v, txn(13), "USD", "EUR", "1", "1"),
        convert_op(w, w, txn(14), "USD", "EUR", "1", "1"),
    ] {
        assert_eq!(
            refused(&mut h, op.clone()),
            Reject::WalletRestricted(w),
            "{op:?}"
        );
    }
    assert_bal(
        &h,
        w,
        "USD",
        ["115.00", "0.00", "0.00", "0.00", "0.00", "115.00"],
    );
    h.assert_replay_matches();
}

#[test]
fn a_restricted_wallet_still_drains_its_queue_and_captures_holds() {
    let mut h = Harness::new();
    let w = wal(1);
    funded(&mut h, w, "USD", "100");
    h.run(reserve_op(w, txn(1), "USD", "60", None)).unwrap();
    h.debit(w, txn(2), "USD", "50").unwrap();
    h.debit(w, txn(3), "USD", "20").unwrap();
    h.run(status_op(w, WalletStatus::Restricted)).unwrap();
    h.credit(w, txn(4), "USD", "10").unwrap();
    assert_eq!(
        h.status(w, txn(2)),
        TxnStatus::Settled,
        "a credit drains the queue while restricted"
    );
    assert_eq!(h.status(w, txn(3)), TxnStatus::AwaitingFunds);
    assert_bal(
        &h,
        w,
        "USD",
        ["60.00", "60.00", "0.00", "20.00", "80.00", "0.00"],
    );
    // A capture works, and the released rest drains the queue.
    h.run(capture_op(w, txn(1), Some("40"))).unwrap();
    assert_eq!(h.status(w, txn(1)), TxnStatus::Captured);
    assert_eq!(h.status(w, txn(3)), TxnStatus::Settled);
    assert_bal(
        &h,
        w,
        "USD",
        ["0.00", "0.00", "0.00", "0.00", "0.00", "0.00"],
    );
    h.assert_replay_matches();
}

#[test]
fn suspended_forbids_all_money_movement() {
    let mut h = Harness::new();
    let (w, v) = (wal(1), wal(2));
    h.open(w, &["USD", "EUR"]);
    h.open(v, &["USD", "EUR"]);
    h.credit(w, txn(1), "USD", "100").unwrap();
    h.run(reserve_op(w, txn(2), "USD", "10", None)).unwrap();
    h.run(pending_op(w, txn(3), "USD", "5")).unwrap();
    h.run(status_op(w, WalletStatus::Suspended)).unwrap();
    for op in [
        credit_op(w, txn(10), "USD", "1"),
        pending_op(w, txn(11), "USD", "1"),
        settle_op(w, txn(3)),
        debit_op(w, txn(12), "USD", "1"),
        reserve_op(w, txn(13), "USD", "1", None),
        capture_op(w, txn(2), None),
        transfer_op(w, v, txn(14), "USD", "1"),
        convert_op(w, v, txn(15), "USD", "EUR", "1", "1"),
        convert_op(w, w, txn(16), "USD", "EUR", "1", "1"),
        // Into a suspended wallet from elsewhere.
        transfer_op(v, w, txn(17), "USD", "1"),
    ] {
        assert_eq!(
            refused(&mut h, op.clone()),
            Reject::WalletSuspended(w),
            "{op:?}"
        );
    }
    assert_bal(
        &h,
        w,
        "USD",
        ["100.00", "10.00", "5.00", "0.00", "10.00", "90.00"],
    );
    // Moves that put no money into or out of cash are allowed.
    h.run(reject_op(w, txn(3))).unwrap();
    h.run(release_op(w, txn(2))).unwrap();
    assert_bal(
        &h,
        w,
        "USD",
        ["100.00", "0.00", "0.00", "0.00", "0.00", "100.00"],
    );
    h.assert_replay_matches();
}

#[test]
fn a_suspended_queue_waits_and_draining_resumes_when_active_again() {
    let mut h = Harness::new();
    let w = wal(1);
    funded(&mut h, w, "USD", "100");
    h.run(reserve_op(w, txn(1), "USD", "80", None)).unwrap();
    h.debit(w, txn(2), "USD", "50").unwrap();
    h.debit(w, txn(3), "USD", "500").unwrap();
    h.debit(w, txn(4), "USD", "10").unwrap();
    h.run(status_op(w, WalletStatus::Suspended)).unwrap();
    // Release and cancel are allowed, but the queue does not drain.
    h.run(release_op(w, txn(1))).unwrap();
    assert_eq!(h.status(w, txn(2)), TxnStatus::AwaitingFunds);
    h.run(cancel_op(w, txn(3))).unwrap();
    assert_eq!(h.status(w, txn(3)), TxnStatus::Cancelled);
    assert_eq!(h.status(w, txn(2)), TxnStatus::AwaitingFunds);
    assert_eq!(h.status(w, txn(4)), TxnStatus::AwaitingFunds);
    run_at(&mut h, 9_000, expire_op(w)).unwrap();
    assert_eq!(h.status(w, txn(2)), TxnStatus::AwaitingFunds);
    assert_bal(
        &h,
        w,
        "USD",
        ["100.00", "0.00", "0.00", "60.00", "60.00", "40.00"],
    );
    h.run(status_op(w, WalletStatus::Active)).unwrap();
    assert_eq!(h.status(w, txn(2)), TxnStatus::Settled);
    assert_eq!(h.status(w, txn(4)), TxnStatus::Settled);
    assert_bal(
        &h,
        w,
        "USD",
        ["40.00", "0.00", "0.00", "0.00", "0.00", "40.00"],
    );
    h.assert_replay_matches();
}

#[test]
fn moving_from_suspended_to_restricted_also_resumes_draining() {
    let mut h = Harness::new();
    let w = wal(1);
    funded(&mut h, w, "USD", "100");
    h.run(reserve_op(w, txn(1), "USD", "80", None)).unwrap();
    h.debit(w, txn(2), "USD", "50").unwrap();
    h.run(status_op(w, WalletStatus::Suspended)).unwrap();
    h.run(release_op(w, txn(1))).unwrap();
    assert_eq!(h.status(w, txn(2)), TxnStatus::AwaitingFunds);
    h.run(status_op(w, WalletStatus::Restricted)).unwrap();
    assert_eq!(h.status(w, txn(2)), TxnStatus::Settled);
    h.assert_replay_matches();
}

#[test]
fn a_wallet_closes_only_when_empty_with_nothing_in_progress() {
    let close = |w| status_op(w, WalletStatus::Closed);
    // Cash.
    let mut h = Harness::new();
    let w = wal(1);
    funded(&mut h, w, "USD", "0.01");
    assert!(matches!(refused(&mut h, close(w)), Reject::InvalidState(_)));
    // Pending.
    let mut h = Harness::new();
    h.open(w, &["USD"]);
    h.run(pending_op(w, txn(1), "USD", "1")).unwrap();
    assert!(matches!(refused(&mut h, close(w)), Reject::InvalidState(_)));
    h.run(reject_op(w, txn(1))).unwrap();
    h.run(close(w)).unwrap();
    // Queued (with zero cash).
    let mut h = Harness::new();
    h.open(w, &["USD"]);
    h.debit(w, txn(1), "USD", "1").unwrap();
    assert!(matches!(refused(&mut h, close(w)), Reject::InvalidState(_)));
    h.run(cancel_op(w, txn(1))).unwrap();
    h.run(close(w)).unwrap();
    // Reserved, in a second asset.
    let mut h = Harness::new();
    h.open(w, &["USD", "EUR"]);
    h.credit(w, txn(1), "EUR", "1").unwrap();
    h.run(reserve_op(w, txn(2), "EUR", "1", None)).unwrap();
    assert!(matches!(refused(&mut h, close(w)), Reject::InvalidState(_)));
    h.run(capture_op(w, txn(2), None)).unwrap();
    // Closing a suspended wallet is allowed once it is empty.
    h.run(status_op(w, WalletStatus::Suspended)).unwrap();
    h.run(close(w)).unwrap();
    assert_eq!(h.ledger.wallet(w).unwrap().status, WalletStatus::Closed);
    h.assert_replay_matches();
}

#[test]
fn closed_is_terminal_and_refuses_everything() {
    let mut h = Harness::new();
    let (w, v) = (wal(1), wal(2));
    h.open(w, &["USD", "EUR"]);
    funded(&mut h, v, "USD", "10");
    h.credit(w, txn(1), "USD", "5").unwrap();
    h.debit(w, txn(2), "USD", "5").unwrap();
    h.run(status_op(w, WalletStatus::Closed)).unwrap();
    for op in [
        credit_op(w, txn(10), "USD", "1"),
        pending_op(w, txn(11), "USD", "1"),
        debit_op(w, txn(12), "USD", "1"),
        reserve_op(w, txn(13), "USD", "1", None),
        transfer_op(w, v, txn(14), "USD", "1"),
        transfer_op(v, w, txn(15), "USD", "1"),
        convert_op(w, w, txn(16), "USD", "EUR", "1", "1"),
        status_op(w, WalletStatus::Active),
        status_op(w, WalletStatus::Suspended),
        status_op(w, WalletStatus::Closed),
    ] {
        assert_eq!(
            refused(&mut h, op.clone()),
            Reject::WalletClosed(w),
            "{op:?}"
        );
    }
    assert_eq!(h.ledger.wallet(w).unwrap().status, WalletStatus::Closed);
    h.assert_replay_matches();
}

// ---------------------------------------------------------------------------
// Sequences
// ---------------------------------------------------------------------------

#[test]
fn the_wallet_sequence_increases_with_every_event() {
    let mut h = Harness::new();
    let (a, b) = (wal(1), wal(2));
    h.open(a, &["USD"]);
    h.open(b, &["USD"]);
    let ops = vec![
        credit_op(a, txn(1), "USD", "100"),
        pending_op(a, txn(2), "USD", "5"),
        reserve_op(a, txn(3), "USD", "10", None),
        debit_op(a, txn(4), "USD", "200"),
        transfer_op(a, b, txn(5), "USD", "1"),
        release_op(a, txn(3)),
        cancel_op(a, txn(4)),
        transfer_op(a, b, txn(6), "USD", "20"),
        status_op(b, WalletStatus::Restricted),
    ];
    for op in ops {
        let before: Vec<u64> = [a, b].iter().map(|&w| seq(&h, w)).collect();
        let n = h.events.len();
        h.run(op).unwrap();
        h.settle_flights();
        for (i, &w) in [a, b].iter().enumerate() {
            let emitted = h.events[n..].iter().filter(|e| e.wallet() == w).count() as u64;
            assert_eq!(seq(&h, w), before[i] + emitted, "{w}: one step per event");
        }
        assert!(h.events.len() > n);
    }
    for w in [a, b] {
        let total = h.events.iter().filter(|e| e.wallet() == w).count() as u64;
        assert_eq!(
            seq(&h, w),
            total,
            "{w}: the sequence counts its events, opening included"
        );
    }
    h.assert_replay_matches();
}

#[test]
fn a_txn_sequence_is_the_wallet_sequence_at_its_creation() {
    let mut h = Harness::new();
    let (a, b) = (wal(1), wal(2));
    h.open(a, &["USD"]);
    h.open(b, &["USD"]);
    h.credit(a, txn(1), "USD", "100").unwrap();
    assert_eq!(
        h.ledger.wallet(a).unwrap().txn(txn(1)).unwrap().sequence,
        seq(&h, a)
    );
    h.run(reserve_op(a, txn(2), "USD", "10", None)).unwrap();
    assert_eq!(
        h.ledger.wallet(a).unwrap().txn(txn(2)).unwrap().sequence,
        seq(&h, a)
    );
    // A debit that settles as it is submitted is created by its one event.
    h.debit(a, txn(3), "USD", "5").unwrap();
    assert_eq!(
        h.ledger.wallet(a).unwrap().txn(txn(3)).unwrap().sequence,
        seq(&h, a)
    );
    h.run(transfer_op(a, b, txn(4), "USD", "5")).unwrap();
    h.settle_flights();
    // The sequence never changes after creation; at each wallet, it counts
    // the wallet's events up to the creating one.
    for w in [a, b] {
        for t in h.ledger.wallet(w).unwrap().txns() {
            let creating =
                h.events
                    .iter()
                    .filter(|e| e.wallet() == w)
                    .position(|e| match e {
                        Event::CreditAccepted { txn, .. }
                        | Event::OutboundQueued { txn, .. }
                        | Event::OutboundSettledAtOnce { txn, .. }
                        | Event::ReservationHeld { txn, .. } => *txn == t.id,
                        Event::TransferReceived { leg, .. }
                        | Event::TransferBounced { leg, .. } => leg.txn == t.id,
                        _ => false,
                    })
                    .unwrap();
            assert_eq!(t.sequence, creating as u64 + 1, "{w} {}", t.id);
        }
    }
    let seqs: Vec<u64> = [1, 2, 3, 4]
        .iter()
        .map(|&n| h.ledger.wallet(a).unwrap().txn(txn(n)).unwrap().sequence)
        .collect();
    assert!(seqs.windows(2).all(|p| p[0] < p[1]), "{seqs:?}");
    assert_eq!(h.ledger.wallet(b).unwrap().txn(txn(4)).unwrap().sequence, 2);
    h.assert_replay_matches();
}

// ---------------------------------------------------------------------------
// Idempotency
// ---------------------------------------------------------------------------

#[test]
fn a_retried_command_returns_the_same_answer_and_emits_nothing() {
    let mut h = Harness::new();
    let (a, b) = (wal(1), wal(2));
    h.open(a, &["USD", "EUR"]);
    h.open(b, &["USD", "EUR"]);
    let ops = vec![
        credit_op(a, txn(1), "USD", "100"),
        pending_op(a, txn(2), "USD", "5"),
        debit_op(a, txn(3), "USD", "10"),
        reserve_op(a, txn(5), "USD", "10", None),
        transfer_op(a, b, txn(6), "USD", "10"),
        convert_op(a, b, txn(7), "USD", "EUR", "10", "0.9"),
        convert_op(a, a, txn(8), "USD", "EUR", "10", "0.9"),
        debit_op(a, txn(4), "USD", "1000"),
        status_op(a, WalletStatus::Active),
    ];
    let mut answers = Vec::new();
    for op in &ops {
        answers.push(h.run(op.clone()).unwrap());
    }
    h.settle_flights();
    // Time has moved and the destination has changed: retries still answer
    // the same and do nothing.
    h.run(status_op(b, WalletStatus::Suspended)).unwrap();
    let n = h.events.len();
    let digest = h.ledger.digest().unwrap();
    for (op, answer) in ops.iter().zip(&answers) {
        assert_eq!(h.run(op.clone()).as_ref(), Ok(answer), "{op:?}");
        assert_eq!(
            h.events.len(),
            n,
            "retried {op:?} emitted events: {:?}",
            &h.events[n..]
        );
    }
    assert_eq!(h.ledger.digest().unwrap(), digest);
    assert_eq!(h.status(a, txn(4)), TxnStatus::AwaitingFunds);
    h.assert_replay_matches();
}

#[test]
fn opening_a_wallet_again_is_idempotent_and_a_different_spec_is_invalid_request() {
    let mut h = Harness::new();
    let w = wal(1);
    h.open(w, &["USD", "EUR"]);
    h.credit(w, txn(1), "USD", "5").unwrap();
    let n = h.events.len();
    h.open(w, &["USD", "EUR"]);
    assert_eq!(h.events.len(), n, "a retried opening emits nothing");
    let open_usd = Op::OpenWallet {
        wallet: w,
        client: settle_engine::ClientId::from_u128(1),
        kind: settle_engine::WalletKind::General,
        customer: None,
        assets: vec![code("USD")],
        single_asset: true,
        settings: Default::default(),
    };
    assert!(matches!(
        refused(&mut h, open_usd),
        Reject::InvalidRequest(_)
    ));
    assert_bal(
        &h,
        w,
        "USD",
        ["5.00", "0.00", "0.00", "0.00", "0.00", "5.00"],
    );
    h.assert_replay_matches();
}

#[test]
fn reusing_a_txn_id_for_another_operation_is_invalid_request() {
    let mut h = Harness::new();
    let (a, b) = (wal(1), wal(2));
    h.open(a, &["USD", "EUR"]);
    h.open(b, &["USD", "EUR"]);
    h.credit(a, txn(1), "USD", "100").unwrap();
    h.debit(a, txn(2), "USD", "10").unwrap();
    h.run(reserve_op(a, txn(3), "USD", "10", None)).unwrap();
    h.run(transfer_op(a, b, txn(4), "USD", "10")).unwrap();
    h.settle_flights();
    for op in [
        debit_op(a, txn(1), "USD", "1"),
        reserve_op(a, txn(1), "USD", "1", None),
        transfer_op(a, b, txn(1), "USD", "1"),
        credit_op(a, txn(2), "USD", "1"),
        reserve_op(a, txn(2), "USD", "1", None),
        convert_op(a, b, txn(2), "USD", "EUR", "1", "1"),
        debit_op(a, txn(3), "USD", "1"),
        credit_op(a, txn(4), "USD", "1"),
        debit_op(a, txn(4), "USD", "1"),
        // At the destination, the inbound record's id is not b's to reuse.
        credit_op(b, txn(4), "USD", "1"),
        debit_op(b, txn(4), "USD", "1"),
        transfer_op(b, a, txn(4), "USD", "1"),
    ] {
        let e = refused(&mut h, op.clone());
        assert!(matches!(e, Reject::InvalidRequest(_)), "{op:?}: {e:?}");
    }
    h.assert_replay_matches();
}

// ---------------------------------------------------------------------------
// Determinism
// ---------------------------------------------------------------------------

fn mixed_script(h: &mut Harness) -> Vec<Result<Done, Reject>> {
    let (a, b, c) = (wal(1), wal(2), wal(3));
    h.open(a, &["USD", "EUR"]);
    h.open(b, &["USD"]);
    h.open(c, &["EUR"]);
    let q = IfInsufficient::Queue;
    let ops = vec![
        credit_op(a, txn(1), "USD", "50"),
        debit_full(a, txn(2), "USD", "80", q, Some(3_000)),
        debit_op(a, txn(3), "USD", "10"),
        transfer_op(a, b, txn(4), "USD", "5"),
        reserve_op(a, txn(5), "USD", "1", None),
        pending_op(b, txn(6), "USD", "7"),
        convert_op(a, c, txn(7), "USD", "EUR", "3", "0.91"),
        settle_op(b, txn(6)),
        transfer_op(b, a, txn(8), "USD", "7"),
        debit_op(a, txn(9), "USD", "0.001"),
        status_op(c, WalletStatus::Suspended),
        credit_op(a, txn(10), "USD", "100"),
        convert_op(a, a, txn(11), "USD", "EUR", "2", "0.5"),
        debit_full(a, txn(12), "USD", "500", q, Some(3_000)),
    ];
    let mut results = Vec::new();
    for (i, op) in ops.into_iter().enumerate() {
        results.push(h.run(op));
        if i % 3 == 2 {
            h.settle_flights();
        }
    }
    results.push(run_at(h, 3_000, expire_op(a)));
    h.settle_flights();
    results
}

#[test]
fn the_same_commands_give_the_same_events_and_digest() {
    let mut one = Harness::new();
    let mut two = Harness::new();
    let r1 = mixed_script(&mut one);
    let r2 = mixed_script(&mut two);
    assert_eq!(r1, r2);
    assert_eq!(one.events, two.events);
    assert_eq!(one.ledger.digest().unwrap(), two.ledger.digest().unwrap());
    assert_eq!(one.ledger, two.ledger);
    // The script did exercise the paths it claims to.
    assert!(r1.iter().any(|r| r.is_err()));
    assert!(
        one.events
            .iter()
            .any(|e| matches!(e, Event::OutboundExpired { .. }))
    );
    assert!(
        one.events
            .iter()
            .any(|e| matches!(e, Event::TransferBounced { .. }))
    );
    assert!(
        one.events
            .iter()
            .any(|e| matches!(e, Event::TransferDelivered { .. }))
    );
    one.assert_replay_matches();
    // The events alone rebuild the state of either run.
    let mut replica = Ledger::new(EngineConfig::default());
    for e in &two.events {
        replica.apply(e).unwrap();
    }
    assert_eq!(replica.digest().unwrap(), one.ledger.digest().unwrap());
}

/// An outbound item that settles as it is submitted is one event,
/// `OutboundSettledAtOnce`: created `settled`, never queued. Logs written
/// before that event existed hold `OutboundQueued` + `OutboundSettled` for
/// the same item; replaying either form must give the same books, flows,
/// records and messages in flight, the wallet's event count aside.
#[test]
fn settling_at_once_is_one_event_and_replays_as_the_two_it_replaced() {
    let mut h = Harness::new();
    let (a, b) = (wal(1), wal(2));
    h.open(a, &["USD", "EUR"]);
    h.open(b, &["USD", "EUR"]);
    h.credit(a, txn(1), "USD", "100").unwrap();
    h.credit(a, txn(2), "EUR", "100").unwrap();
    let before = h.events.len();
    // A payout, a transfer with an expiry, a conversion to another wallet,
    // a conversion within the wallet, and a debit that must wait.
    h.run(debit_full(
        a,
        txn(3),
        "USD",
        "5",
        IfInsufficient::Queue,
        Some(9_000),
    ))
    .unwrap();
    h.run(transfer_full(
        a,
        b,
        txn(4),
        "USD",
        "7",
        IfInsufficient::Queue,
        Some(9_000),
    ))
    .unwrap();
    h.run(convert_op(a, b, txn(5), "USD", "EUR", "10", "0.9"))
        .unwrap();
    h.run(convert_op(a, a, txn(6), "EUR", "USD", "10", "1.1"))
        .unwrap();
    h.run(debit_op(a, txn(7), "USD", "1000")).unwrap();
    let kinds: Vec<&str> = h.events[before..]
        .iter()
        .map(|e| match e {
            Event::OutboundSettledAtOnce { .. } => "at_once",
            Event::OutboundQueued { .. } => "queued",
            Event::OutboundSettled { .. } => "settled",
            _ => "other",
        })
        .collect();
    assert_eq!(
        kinds,
        ["at_once", "at_once", "at_once", "at_once", "queued"]
    );
    for n in [3, 4, 5, 6] {
        assert_eq!(h.status(a, txn(n)), TxnStatus::Settled, "txn {n}");
    }
    assert_eq!(h.status(a, txn(7)), TxnStatus::AwaitingFunds);
    // Half of the deliveries land before the cut, so both forms also agree
    // on what is in flight.
    h.settle_flights();
    // (In euros: the dollar queue holds the debit that waits.)
    h.run(transfer_op(a, b, txn(8), "EUR", "3")).unwrap();

    // The old form: each at-once event as the two it replaced.
    let mut old_form = Vec::new();
    let mut split = 0u64;
    for e in &h.events {
        if let Event::OutboundSettledAtOnce {
            wallet,
            txn,
            asset,
            amount,
            target,
            expires_at,
            info,
            at,
        } = e.clone()
        {
            split += 1;
            old_form.push(Event::OutboundQueued {
                wallet,
                txn,
                asset,
                amount,
                target,
                expires_at,
                info,
                at,
            });
            old_form.push(Event::OutboundSettled { wallet, txn, at });
        } else {
            old_form.push(e.clone());
        }
    }
    assert_eq!(split, 5);
    let mut replica = Ledger::new(EngineConfig::default());
    for e in &old_form {
        replica.apply(e).unwrap();
    }
    replica.check_invariants().unwrap();
    let mut new_form = Ledger::new(EngineConfig::default());
    for e in &h.events {
        new_form.apply(e).unwrap();
    }
    // Everything but the event counts: the wallet's, and each record's
    // (the count when it was created, which shifts after a split event).
    let shape = |s: &WalletState| {
        let records: Vec<_> = s
            .txns()
            .map(|t| {
                let mut t = t.clone();
                t.sequence = 0;
                t
            })
            .collect();
        (
            s.books().cloned().collect::<Vec<_>>(),
            s.flows().map(|(a, f)| (a, *f)).collect::<Vec<_>>(),
            records,
            s.awaiting_receipt().collect::<Vec<_>>(),
            s.next_expiry(),
            (s.status, s.updated_at),
        )
    };
    for w in [a, b] {
        let old = replica.wallet(w).unwrap();
        let new = new_form.wallet(w).unwrap();
        assert_eq!(new, h.ledger.wallet(w).unwrap());
        let extra = if w == a { split } else { 0 };
        assert_eq!(old.sequence, new.sequence + extra, "{w}");
        assert_eq!(shape(old), shape(new), "{w}");
    }
    let flying = |l: &Ledger| l.in_flight().cloned().collect::<Vec<Message>>();
    assert_eq!(flying(&replica), flying(&new_form));
    assert_eq!(flying(&new_form).len(), 1);
}
