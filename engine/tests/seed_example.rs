//! The FIFO example of the seeds, end to end.
mod common;
use common::*;
use settle_engine::TxnStatus;

#[test]
fn cash_30_pay_40_then_10_then_credit_10_settles_the_40_only() {
    let mut h = Harness::new();
    let w = wal(1);
    h.open(w, &["USD"]);
    h.credit(w, txn(1), "USD", "30000").unwrap();
    h.debit(w, txn(2), "USD", "40000").unwrap();
    h.debit(w, txn(3), "USD", "10000").unwrap();
    assert_eq!(h.status(w, txn(2)), TxnStatus::AwaitingFunds);
    assert_eq!(
        h.status(w, txn(3)),
        TxnStatus::AwaitingFunds,
        "the 10 must not overtake the 40"
    );
    let b = h.balance(w, "USD");
    assert_eq!(
        (b.cash, b.queued, b.available),
        (d("30000.00"), d("50000.00"), d("0.00"))
    );

    h.credit(w, txn(4), "USD", "10000").unwrap();
    assert_eq!(h.status(w, txn(2)), TxnStatus::Settled);
    assert_eq!(h.status(w, txn(3)), TxnStatus::AwaitingFunds);
    let b = h.balance(w, "USD");
    assert_eq!(
        (b.cash, b.queued, b.committed, b.available),
        (d("0.00"), d("10000.00"), d("10000.00"), d("0.00"))
    );
    h.assert_replay_matches();
}
