//! The codecs on the hot and the slow paths, per item (criterion):
//!
//! - parsing a transfer request (JSON body to an engine command, as the
//!   front door does for `POST /v1/transfers`);
//! - a batch's answer (1,000 transfer results, ~340 KB of JSON) kept for
//!   retries: compressed, and expanded again for a replay;
//! - a snapshot of 10,000 funded wallets written (encode, write, fsync,
//!   rename) and read back (read, check, decode, restore the ledger).
//!
//! `cargo bench --bench codec`

use criterion::{BatchSize, Criterion, Throughput, black_box, criterion_group, criterion_main};
use settle_engine::{ClientId, EngineConfig, TxnId, WalletId};
use settle_gateway::answer_body::AnswerBody;
use settle_gateway::http::handlers::money::{TransferBody, transfer_op};
use settle_gateway::http::json::parse_body;
use settle_gateway::image::Image;
use settle_snapshots::snapshot::SnapshotFile;
use std::sync::Arc;

mod support;
use support::{boot_without_fsync, funded_ledger};

const WALLETS: u64 = 10_000;

fn transfer_parsing(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let runtime = tokio::runtime::Runtime::new().unwrap_or_else(|e| panic!("{e}"));
    let booted = runtime.block_on(boot_without_fsync(dir.path(), "bench-admin-key-0123456789"));
    let app = Arc::clone(&booted.app);
    let body = format!(
        r#"{{"fromWalletId":"{}","toWalletId":"{}","asset":"USD","amount":"12.34","reference":"inv-42"}}"#,
        WalletId::from_u128(1),
        WalletId::from_u128(2)
    );
    let mut g = c.benchmark_group("codec");
    g.throughput(Throughput::Elements(1));
    g.bench_function("parse a transfer request", |b| {
        b.iter(|| {
            let parsed: TransferBody =
                parse_body(black_box(body.as_bytes())).unwrap_or_else(|e| panic!("{e:?}"));
            // Wallet ownership is checked against the directory: an unknown
            // wallet is refused after the whole body was read and parsed.
            black_box(transfer_op(
                &app,
                ClientId::from_u128(1),
                TxnId::from_u128(9),
                parsed,
            ))
        });
    });
    g.finish();
    booted.app.gateway.shutdown();
}

/// The answer of a batch of 1,000 transfers, shaped as the front door
/// writes it (fresh ULIDs, amounts and times that vary).
fn batch_answer() -> bytes::Bytes {
    let results: Vec<String> = (0..1_000u64)
        .map(|i| {
            format!(
                r#"{{"status":201,"data":{{"id":"{}","type":"transfer","status":"settled","walletId":"{}","asset":"USD","amount":"{}.{:02}","direction":"out","counterpartyWalletId":"{}","sequence":{},"createdAt":"2026-11-22T05:19:54.{:03}Z","updatedAt":"2026-11-22T05:19:54.{:03}Z"}}}}"#,
                TxnId::from_ulid(ulid::Ulid::new()),
                WalletId::from_ulid(ulid::Ulid::new()),
                i % 10,
                i % 100,
                WalletId::from_ulid(ulid::Ulid::new()),
                i * 7 % 500,
                i % 1000,
                i % 1000
            )
        })
        .collect();
    bytes::Bytes::from(format!(
        r#"{{"data":{{"results":[{}]}}}}"#,
        results.join(",")
    ))
}

fn answer_body(c: &mut Criterion) {
    let body = batch_answer();
    let kept = AnswerBody::new(body.clone());
    println!(
        "answer body: {} bytes of JSON kept as {} ({:?})",
        body.len(),
        kept.stored_len(),
        kept
    );
    let mut g = c.benchmark_group("answer body");
    g.throughput(Throughput::Bytes(body.len() as u64));
    g.bench_function("compress a batch of 1,000", |b| {
        b.iter(|| AnswerBody::new(black_box(body.clone())));
    });
    g.bench_function("expand a batch of 1,000", |b| {
        b.iter(|| black_box(&kept).bytes().unwrap_or_else(|e| panic!("{e}")));
    });
    g.finish();
    // One wallet's answer, as `POST /v1/wallets` gives it: compressed
    // against the built-in dictionary, and kept as is for comparison.
    let wallet = bytes::Bytes::from_static(
        br#"{"data":{"id":"wal_01M81ABCDEXHBHK61RP9AEQQQQ","type":"general","status":"active","statusReason":null,"name":null,"description":null,"customerId":null,"client":{"id":"cli_01M81AAAAAF70ZWC74VTZE3999","name":"loadgen-1"},"assets":["USD"],"balances":[{"asset":"USD","cash":"0.00","reserved":"0.00","pending":"0.00","queued":"0.00","committed":"0.00","available":"0.00"}],"isFavourite":false,"sequence":1,"createdAt":"2026-11-22T09:41:13.007Z","updatedAt":"2026-11-22T09:41:13.007Z"}}"#,
    );
    let kept = AnswerBody::new(wallet.clone());
    println!(
        "answer body: {} bytes of JSON kept as {} ({:?})",
        wallet.len(),
        kept.stored_len(),
        kept
    );
    let mut g = c.benchmark_group("answer body, one wallet");
    g.bench_function("keep (dictionary)", |b| {
        b.iter(|| AnswerBody::new(black_box(wallet.clone())));
    });
    g.bench_function("expand", |b| {
        b.iter(|| black_box(&kept).bytes().unwrap_or_else(|e| panic!("{e}")));
    });
    g.bench_function("copy (plain, as before)", |b| {
        b.iter(|| AnswerBody::Plain(bytes::Bytes::copy_from_slice(black_box(&wallet))));
    });
    g.finish();
}

fn snapshot_codec(c: &mut Criterion) {
    let config = EngineConfig::default();
    let image = Image::from_ledger(funded_ledger(WALLETS, ClientId::from_u128(1)));
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let mut g = c.benchmark_group("snapshot");
    g.sample_size(10);
    g.throughput(Throughput::Elements(WALLETS));
    let mut n = 0u64;
    g.bench_function("write 10k wallets", |b| {
        b.iter_batched(
            || {
                n += 1;
                (
                    dir.path().join(format!("w{n}")),
                    format!("snp_01JBENCH00000000000{n:07}"),
                )
            },
            |(path, id)| {
                image
                    .write_snapshot(&path, &id, 1)
                    .unwrap_or_else(|e| panic!("{e}"))
            },
            BatchSize::PerIteration,
        );
    });
    let (path, _) = image
        .write_snapshot(&dir.path().join("r"), "snp_01JBENCH0000000000000000RR", 1)
        .unwrap_or_else(|e| panic!("{e}"));
    g.bench_function("read 10k wallets", |b| {
        b.iter(|| {
            let file = SnapshotFile::open(&path).unwrap_or_else(|e| panic!("{e}"));
            Image::from_snapshot(&file, config.clone()).unwrap_or_else(|e| panic!("{e}"))
        });
    });
    g.finish();
}

criterion_group!(benches, transfer_parsing, answer_body, snapshot_codec);
criterion_main!(benches);
