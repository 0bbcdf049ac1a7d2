//! The cost of one routed message: a transfer from one caller at a time,
//! through the gateway to the source wallet's actor and back (its delivery
//! and receipt run on, between the actors). 10,000 wallets, no log.
//!
//! `cargo bench --bench actors`

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use settle_engine::TxnId;
use settle_gateway::GatewayConfig;

mod support;
use support::{Pairs, funded_gateway, transfer};

fn routed_transfer(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let g = rt.block_on(funded_gateway(10_000, GatewayConfig::default()));
    let mut pairs = Pairs::new(0x5EED, 10_000);
    let mut seq = 1u128 << 100;
    let mut group = c.benchmark_group("actors");
    group.throughput(Throughput::Elements(1));
    group.bench_function("routed_transfer_round_trip", |b| {
        b.to_async(&rt).iter(|| {
            seq += 1;
            let (from, to) = pairs.next();
            let g = g.clone();
            async move { g.execute(transfer(from, to, TxnId::from_u128(seq))).await }
        })
    });
    group.finish();
    g.shutdown();
}

criterion_group!(benches, routed_transfer);
criterion_main!(benches);
