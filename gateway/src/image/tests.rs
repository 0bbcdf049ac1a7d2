//! Snapshots of an image: exact round trips, the packed bytes reused at
//! install, and refusals that name the file.

use super::*;
use settle_engine::{
    AssetCode, Command, IfInsufficient, Op, Timestamp, TxnId, TxnInfo, WalletKind,
};
use settle_engine::{WalletSettings, wallet::pack};
use settle_snapshots::snapshot::{SnapshotWriter, snapshot_dir};

fn usd() -> AssetCode {
    AssetCode::new("USD").unwrap_or_else(|e| panic!("{e}"))
}

/// `n` wallets, funded, some transfers in flight and some queued.
fn image(n: u128) -> Image {
    let mut image = Image::empty(EngineConfig::default());
    let at = Timestamp::from_millis(1_700_000_000_000);
    let mut events = Vec::new();
    let mut run = |image: &mut Image, op: Op| {
        image
            .ledger
            .execute(&Command { at, op }, &mut events)
            .unwrap_or_else(|e| panic!("{e}"));
    };
    for i in 1..=n {
        let wallet = WalletId::from_u128(i);
        run(
            &mut image,
            Op::OpenWallet {
                wallet,
                client: ClientId::from_u128(1),
                kind: WalletKind::General,
                customer: None,
                assets: vec![usd()],
                single_asset: true,
                settings: WalletSettings::default(),
            },
        );
        run(
            &mut image,
            Op::Credit {
                wallet,
                txn: TxnId::from_u128(i << 64),
                asset: usd(),
                amount: Decimal::new(1_000, 2),
                pending: false,
                info: TxnInfo::default(),
            },
        );
    }
    for i in 1..n {
        run(
            &mut image,
            Op::Transfer {
                from: WalletId::from_u128(i),
                to: WalletId::from_u128(i + 1),
                txn: TxnId::from_u128((i << 64) + 1),
                asset: usd(),
                // Every third one too large: it waits in the queue.
                amount: Decimal::new(if i % 3 == 0 { 5_000 } else { 250 }, 2),
                if_insufficient: IfInsufficient::Queue,
                expires_at: None,
                info: TxnInfo::default(),
            },
        );
    }
    image.position = 42;
    image
}

fn write(image: &Image, dir: &Path) -> PathBuf {
    image
        .write_snapshot(dir, "snp_01JABCDEFGHJKMNPQRSTVWXYZ1", 1)
        .unwrap_or_else(|e| panic!("{e}"))
        .0
}

#[test]
fn a_snapshot_restores_the_image_and_install_reuses_its_bytes() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    // More than one section of wallets, and an odd number of them.
    let image = image(WALLETS_PER_SECTION as u128 * 2 + 5);
    let path = write(&image, &snapshot_dir(dir.path()));
    let file = SnapshotFile::open(&path).unwrap_or_else(|e| panic!("{e}"));
    let mut loaded =
        Image::from_snapshot(&file, EngineConfig::default()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(loaded.ledger, image.ledger, "the very same wallets");
    assert!(
        loaded.ledger.in_flight().next().is_some(),
        "messages in flight restored"
    );
    assert_eq!(loaded.digest().ok(), image.digest().ok());
    // A wallet changed after the load is packed again; the rest reuse the
    // snapshot's bytes, which are what packing them would give.
    let changed = WalletId::from_u128(3);
    let mut events = Vec::new();
    loaded
        .ledger
        .execute(
            &Command {
                at: Timestamp::from_millis(1_700_000_000_001),
                op: Op::Credit {
                    wallet: changed,
                    txn: TxnId::from_u128(1 << 100),
                    asset: usd(),
                    amount: Decimal::new(1, 2),
                    pending: false,
                    info: TxnInfo::default(),
                },
            },
            &mut events,
        )
        .unwrap_or_else(|e| panic!("{e}"));
    let directory = Directory::new();
    let idempotency = IdempotencyStore::new(
        std::time::Duration::from_secs(60),
        1_000,
        std::time::Duration::from_secs(1),
    );
    let funding = Funding::new(WebhookConfig::default(), EngineConfig::default().assets);
    let installed = loaded.install(&directory, &idempotency, &funding, 0);
    assert_eq!(installed.len(), image.ledger.wallets().len());
    for (state, bytes) in &installed {
        match bytes {
            Some(bytes) => {
                assert_ne!(
                    state.id, changed,
                    "a changed wallet's old bytes are not reused"
                );
                assert_eq!(&bytes[..], &pack::to_bytes(state)[..]);
            }
            None => assert_eq!(state.id, changed),
        }
    }
}

/// A snapshot file whose frames are all sound but whose content is not.
fn file_with_sections(dir: &Path, version: u16, sections: &[Vec<u8>]) -> PathBuf {
    let header = SnapshotHeader {
        version,
        id: "snp_01JABCDEFGHJKMNPQRSTVWXYZ2".into(),
        position: 7,
        created_at_ms: 1,
        summary: Summary::default(),
    };
    let mut w = SnapshotWriter::create(dir, &header).unwrap_or_else(|e| panic!("{e}"));
    for s in sections {
        w.section(s).unwrap_or_else(|e| panic!("{e}"));
    }
    w.finish().unwrap_or_else(|e| panic!("{e}")).0
}

#[test]
fn a_wallet_that_does_not_decode_is_refused_and_named() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let good = image(3);
    let wallets: Vec<&WalletState> = good.ledger.wallets().collect();
    let section = encode_wallets(&wallets);
    // Damage inside the second wallet's bytes, under sound checksums (as a
    // bug, not the disk, would): the section is refused, naming the file,
    // the section and the wallet.
    let mut r = Reader::new(&section);
    let framing = (r.map_len(), r.str(), r.array_len(), r.bin(), r.bin());
    let Ok(second) = framing.4 else {
        panic!("{framing:?}")
    };
    let mut bad = section.clone();
    bad[r.position() - second.len()] = 0xc1; // never used in MessagePack
    for (section, says) in [
        (bad, "wallet 1 does not decode"),
        (section[..section.len() - 3].to_vec(), "wallet 2"),
    ] {
        let path = file_with_sections(dir.path(), FORMAT_VERSION, &[section]);
        let file = SnapshotFile::open(&path).unwrap_or_else(|e| panic!("{e}"));
        let Err(err) = Image::from_snapshot(&file, EngineConfig::default()) else {
            panic!("a damaged wallet section was accepted")
        };
        assert!(
            err.0.contains(&path.display().to_string())
                && err.0.contains("section 0")
                && err.0.contains(says),
            "{err}"
        );
        std::fs::remove_file(&path).unwrap_or_else(|e| panic!("{e}"));
    }
}

#[test]
fn a_snapshot_of_an_older_format_is_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = file_with_sections(dir.path(), 1, &[]);
    let Err(err) = SnapshotFile::open(&path) else {
        panic!("a version 1 snapshot was accepted")
    };
    let text = err.to_string();
    assert!(
        text.contains(&path.display().to_string())
            && text.contains("format version 1")
            && text.contains("older settle"),
        "{text}"
    );
}
