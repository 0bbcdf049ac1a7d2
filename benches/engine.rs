//! The state machine's cost per operation, without actors, log or HTTP.
//!
//! `cargo bench --bench engine`

use criterion::{BatchSize, Criterion, Throughput, black_box, criterion_group, criterion_main};
use settle_engine::{
    ClientId, Command, Decimal, EngineConfig, Event, IfInsufficient, Ledger, Op, Timestamp, TxnId,
    TxnInfo, WalletId, WalletKind, WalletSettings,
};

mod support;
use support::usd;

const WALLETS: u128 = 10_000;

/// A ledger with `WALLETS` funded USD wallets, and the events that built it.
fn funded() -> (Ledger, Vec<Event>) {
    let mut ledger = Ledger::new(EngineConfig::default());
    let mut events = Vec::new();
    let at = Timestamp::from_millis(1);
    for n in 0..WALLETS {
        let wallet = WalletId::from_u128(n + 1);
        let open = Op::OpenWallet {
            wallet,
            client: ClientId::from_u128(1),
            kind: WalletKind::General,
            customer: None,
            assets: vec![usd()],
            single_asset: true,
            settings: WalletSettings::default(),
        };
        let credit = Op::Credit {
            wallet,
            txn: TxnId::from_u128(n + 1),
            asset: usd(),
            amount: Decimal::new(100_000_000, 2),
            pending: false,
            info: TxnInfo::default(),
        };
        for op in [open, credit] {
            let _ = ledger.execute(&Command { at, op }, &mut events);
        }
    }
    (ledger, events)
}

/// A cheap deterministic pseudo-random wallet index (xorshift).
fn next(state: &mut u64) -> u128 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    u128::from(*state % 10_000) + 1
}

fn per_operation(c: &mut Criterion) {
    let (base, _) = funded();
    let mut g = c.benchmark_group("engine");
    g.throughput(Throughput::Elements(1));

    let mut ledger = base.clone();
    let mut seq = 1u128 << 64;
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    let mut out = Vec::with_capacity(16);
    g.bench_function("credit", |b| {
        b.iter(|| {
            seq += 1;
            out.clear();
            let op = Op::Credit {
                wallet: WalletId::from_u128(next(&mut rng)),
                txn: TxnId::from_u128(seq),
                asset: usd(),
                amount: Decimal::new(1, 2),
                pending: false,
                info: TxnInfo::default(),
            };
            black_box(ledger.execute(
                &Command {
                    at: Timestamp::from_millis(2),
                    op,
                },
                &mut out,
            ))
        })
    });

    g.bench_function("debit_settles_at_once", |b| {
        b.iter(|| {
            seq += 1;
            out.clear();
            let op = Op::Debit {
                wallet: WalletId::from_u128(next(&mut rng)),
                txn: TxnId::from_u128(seq),
                asset: usd(),
                amount: Decimal::new(1, 2),
                if_insufficient: IfInsufficient::Queue,
                expires_at: None,
                info: TxnInfo::default(),
            };
            black_box(ledger.execute(
                &Command {
                    at: Timestamp::from_millis(3),
                    op,
                },
                &mut out,
            ))
        })
    });

    g.bench_function("transfer_with_delivery_and_receipt", |b| {
        b.iter(|| {
            seq += 1;
            out.clear();
            let from = next(&mut rng);
            let to = if from == WALLETS { 1 } else { from + 1 };
            let op = Op::Transfer {
                from: WalletId::from_u128(from),
                to: WalletId::from_u128(to),
                txn: TxnId::from_u128(seq),
                asset: usd(),
                amount: Decimal::new(1, 2),
                if_insufficient: IfInsufficient::Queue,
                expires_at: None,
                info: TxnInfo::default(),
            };
            let at = Timestamp::from_millis(4);
            let r = ledger.execute(&Command { at, op }, &mut out);
            let d = ledger.deliver_all(at, &mut out);
            black_box((r, d))
        })
    });
    g.finish();
}

fn replay(c: &mut Criterion) {
    let (_, events) = funded();
    let mut g = c.benchmark_group("replay");
    g.throughput(Throughput::Elements(events.len() as u64));
    g.sample_size(10);
    g.bench_function("apply_20k_events", |b| {
        b.iter_batched(
            || Ledger::new(EngineConfig::default()),
            |mut ledger| {
                for e in &events {
                    let _ = ledger.apply(e);
                }
                ledger
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

criterion_group!(benches, per_operation, replay);
criterion_main!(benches);
