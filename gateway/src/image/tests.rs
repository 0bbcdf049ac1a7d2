//! Snapshots of an image: exact round trips, the packed bytes reused at
//! install, the lazy load against the eager state, and refusals that name
//! the file.

use super::stored::Stored;
use super::*;
use proptest::prelude::*;
use settle_engine::msgpack::Reader;
use settle_engine::{
    AssetCode, Command, Event, IfInsufficient, Message, Op, Timestamp, TxnId, TxnInfo, WalletId,
    WalletKind,
};
use settle_engine::{WalletSettings, wallet::pack};
use settle_snapshots::snapshot::{SnapshotFile, SnapshotStream, SnapshotWriter, snapshot_dir};

fn usd() -> AssetCode {
    AssetCode::new("USD").unwrap_or_else(|e| panic!("{e}"))
}

/// Opens a general USD wallet `wallet` of client `client`.
fn open_usd(wallet: u128, client: u128) -> Op {
    Op::OpenWallet {
        wallet: WalletId::from_u128(wallet),
        client: ClientId::from_u128(client),
        kind: WalletKind::General,
        customer: None,
        assets: vec![usd()],
        single_asset: true,
        settings: WalletSettings::default(),
    }
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
        run(&mut image, open_usd(i, 1));
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

fn load(path: &Path) -> Image {
    let stream = SnapshotStream::open(path).unwrap_or_else(|e| panic!("{e}"));
    Image::from_stream(stream, EngineConfig::default()).unwrap_or_else(|e| panic!("{e}"))
}

/// `load`'s image, read whole into memory first (offline tools).
fn load_in_memory(path: &Path) -> Image {
    let file = SnapshotFile::open(path).unwrap_or_else(|e| panic!("{e}"));
    Image::from_snapshot(&file, EngineConfig::default()).unwrap_or_else(|e| panic!("{e}"))
}

fn stores() -> (Directory, std::sync::Arc<IdempotencyStore>, Funding) {
    let directory = Directory::new();
    let idempotency = IdempotencyStore::new(
        std::time::Duration::from_secs(60),
        1_000,
        std::time::Duration::from_secs(1),
    );
    let funding = Funding::new(WebhookConfig::default(), EngineConfig::default().assets);
    (directory, idempotency, funding)
}

/// Installs `image` into fresh stores: every wallet handed on, decoded,
/// and the directory it filled.
/// The transfers toward each of the five wallets `history` runs on, and
/// the count of queued items, as the image's index holds them (taken out
/// of it).
fn incoming(image: &mut Image) -> (Vec<Vec<settle_engine::Txn>>, u64) {
    let index = image.take_incoming();
    let toward = (1..=5u128)
        .map(|w| index.toward(WalletId::from_u128(w)))
        .collect();
    (toward, index.queued())
}

/// The items waiting in `ledger`'s FIFO queues, counted in the queues.
fn queued_in(ledger: &Ledger) -> u64 {
    ledger
        .wallets()
        .flat_map(|w| w.books())
        .map(|b| b.queue().len() as u64)
        .sum()
}

fn installed(image: Image) -> (Vec<WalletState>, Directory) {
    let (d, i, f) = stores();
    let wallets = image
        .install(&d, &i, &f, 0)
        .unwrap_or_else(|e| panic!("{e}"))
        .into_iter()
        .map(|w| match w {
            InstalledWallet::Live(state) => *state,
            InstalledWallet::Packed(_, bytes) => {
                pack::decode(&bytes).unwrap_or_else(|e| panic!("{e}"))
            }
        })
        .collect();
    (wallets, d)
}

/// Runs `op` on a copy of `ledger` and returns the record of its events
/// (what the live engine would have logged).
fn logged(ledger: &mut Ledger, op: Op) -> Record {
    let wallet = op.wallet();
    let mut events = Vec::new();
    let at = Timestamp::from_millis(1_700_000_000_001);
    ledger
        .execute(&Command { at, op }, &mut events)
        .unwrap_or_else(|e| panic!("{e}"));
    Record::Events { wallet, events }
}

#[test]
fn a_snapshot_restores_the_image_and_install_reuses_its_bytes() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    // More than one section of wallets, and an odd number of them.
    let image = image(WALLETS_PER_SECTION as u128 * 2 + 5);
    let path = write(&image, &snapshot_dir(dir.path()));
    let mut loaded = load(&path);
    assert_eq!(loaded.wallet_count(), image.wallet_count());
    assert_eq!(loaded.ledger.wallets().len(), 0, "no wallet decoded");
    assert!(
        loaded.ledger.in_flight().next().is_some(),
        "messages in flight restored"
    );
    assert_eq!(loaded.digest().ok(), image.digest().ok());
    assert_eq!(loaded.summary().ok(), image.summary().ok());
    // The log's tail touches one wallet: it alone is decoded, changed, and
    // packed again at install; the rest hand on the snapshot's bytes,
    // which are what packing them would give.
    let changed = WalletId::from_u128(3);
    let mut eager = image.ledger.clone();
    let record = logged(
        &mut eager,
        Op::Credit {
            wallet: changed,
            txn: TxnId::from_u128(1 << 100),
            asset: usd(),
            amount: Decimal::new(1, 2),
            pending: false,
            info: TxnInfo::default(),
        },
    );
    loaded.apply(43, record).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(loaded.ledger.wallets().len(), 1);
    let mut eager = Image::from_ledger(eager);
    eager.position = 43;
    assert_eq!(loaded.digest().ok(), eager.digest().ok());
    assert_eq!(loaded.summary().ok(), eager.summary().ok());
    let (directory, idempotency, funding) = stores();
    let installed = loaded
        .install(&directory, &idempotency, &funding, 0)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(installed.len(), image.wallet_count());
    for w in &installed {
        match w {
            InstalledWallet::Packed(outline, bytes) => {
                assert_ne!(
                    outline.id, changed,
                    "a changed wallet's old bytes are not reused"
                );
                let state = pack::decode(bytes).unwrap_or_else(|e| panic!("{e}"));
                assert_eq!(
                    &state,
                    eager.ledger.wallet(outline.id).unwrap_or_else(|| panic!())
                );
                assert_eq!(&pack::Outline::of(&state), outline);
                assert_eq!(&bytes[..], &pack::to_bytes(&state)[..]);
            }
            InstalledWallet::Live(state) => {
                assert_eq!(state.id, changed);
                assert_eq!(Some(&**state), eager.ledger.wallet(changed));
            }
        }
    }
    // The directory knows every wallet and where each transaction was made.
    assert_eq!(
        directory.wallets_of(ClientId::from_u128(1)).len(),
        installed.len()
    );
    assert_eq!(
        directory.wallet_of_txn(TxnId::from_u128(1 << 100)),
        Some(changed)
    );
    assert_eq!(
        directory.wallet_of_txn(TxnId::from_u128((7 << 64) + 1)),
        Some(WalletId::from_u128(7))
    );
}

#[test]
fn the_log_tail_is_checked_against_the_snapshots_wallets() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let image = image(6);
    let path = write(&image, &snapshot_dir(dir.path()));
    // A transaction id that a wallet still packed created already.
    let mut other = image.ledger.clone();
    let reused = logged(&mut Ledger::new(EngineConfig::default()), open_usd(99, 1));
    let mut loaded = load(&path);
    loaded.apply(43, reused).unwrap_or_else(|e| panic!("{e}"));
    let mut fresh = Ledger::new(EngineConfig::default());
    let _ = logged(&mut fresh, open_usd(99, 1));
    let twice = logged(
        &mut fresh,
        Op::Credit {
            wallet: WalletId::from_u128(99),
            txn: TxnId::from_u128(5 << 64),
            asset: usd(),
            amount: Decimal::new(1, 2),
            pending: false,
            info: TxnInfo::default(),
        },
    );
    let Err(err) = loaded.apply(44, twice) else {
        panic!("a transaction created twice was accepted")
    };
    assert!(err.contains("created by"), "{err}");
    // Opening a wallet the snapshot holds is a second opening.
    let mut loaded = load(&path);
    let again = logged(&mut Ledger::new(EngineConfig::default()), open_usd(2, 1));
    let Err(err) = loaded.apply(43, again) else {
        panic!("a wallet opened twice was accepted")
    };
    assert!(err.contains("twice"), "{err}");
    // A delivery to a wallet still packed takes its message from flight.
    let mut loaded = load(&path);
    let mut events = Vec::new();
    let txn = TxnId::from_u128((1 << 64) + 1);
    other
        .deliver(txn, Timestamp::from_millis(1_700_000_000_002), &mut events)
        .unwrap_or_else(|e| panic!("{e}"));
    let mut position = 42;
    for e in events {
        position += 1;
        let record = Record::Events {
            wallet: e.wallet(),
            events: vec![e],
        };
        loaded
            .apply(position, record)
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let mut eager = Image::from_ledger(other);
    eager.position = position;
    assert_eq!(loaded.digest().ok(), eager.digest().ok());
    loaded.decode_all().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(loaded.ledger, eager.ledger);
}

/// One step of a random history: an operation, or the delivery of the
/// oldest message in flight.
#[derive(Clone, Debug)]
enum Step {
    Credit(u8, i64),
    Transfer(u8, u8, i64, bool),
    Reserve(u8, i64),
    Deliver,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (0u8..5, 1i64..5_000).prop_map(|(w, a)| Step::Credit(w, a)),
        (0u8..5, 0u8..5, 1i64..5_000, any::<bool>())
            .prop_map(|(f, t, a, q)| Step::Transfer(f, t, a, q)),
        (0u8..5, 1i64..2_000).prop_map(|(w, a)| Step::Reserve(w, a)),
        Just(Step::Deliver),
    ]
}

/// Runs `steps` on `ledger`, returning one record per wallet's events in
/// order (refused operations log nothing but what they applied).
fn history(ledger: &mut Ledger, steps: &[Step], first_txn: u128) -> Vec<Record> {
    let at = Timestamp::from_millis(1_700_000_000_000);
    let wallet = |i: u8| WalletId::from_u128(u128::from(i) + 1);
    let mut records = Vec::new();
    for (k, s) in steps.iter().enumerate() {
        let txn = TxnId::from_u128(first_txn + k as u128);
        let mut events = Vec::new();
        let _ = match *s {
            Step::Credit(w, a) => ledger
                .execute(
                    &Command {
                        at,
                        op: Op::Credit {
                            wallet: wallet(w),
                            txn,
                            asset: usd(),
                            amount: Decimal::new(a, 2),
                            pending: false,
                            info: TxnInfo::default(),
                        },
                    },
                    &mut events,
                )
                .map(|_| ()),
            Step::Transfer(f, t, a, queue) => ledger
                .execute(
                    &Command {
                        at,
                        op: Op::Transfer {
                            from: wallet(f),
                            to: wallet(t),
                            txn,
                            asset: usd(),
                            amount: Decimal::new(a, 2),
                            if_insufficient: if queue {
                                IfInsufficient::Queue
                            } else {
                                IfInsufficient::Reject
                            },
                            expires_at: None,
                            info: TxnInfo::default(),
                        },
                    },
                    &mut events,
                )
                .map(|_| ()),
            Step::Reserve(w, a) => ledger
                .execute(
                    &Command {
                        at,
                        op: Op::Reserve {
                            wallet: wallet(w),
                            txn,
                            asset: usd(),
                            amount: Decimal::new(a, 2),
                            expires_at: Some(Timestamp::from_millis(1_800_000_000_000)),
                            info: TxnInfo::default(),
                        },
                    },
                    &mut events,
                )
                .map(|_| ()),
            Step::Deliver => {
                let first = ledger.in_flight().next().map(Message::txn);
                match first {
                    Some(t) => ledger.deliver(t, at, &mut events),
                    None => Ok(()),
                }
            }
        };
        // One record per run of one wallet's events, as the actors log them.
        let mut run: Vec<Event> = Vec::new();
        for e in events {
            if run.last().is_some_and(|l: &Event| l.wallet() != e.wallet()) {
                let done = std::mem::take(&mut run);
                records.push(Record::Events {
                    wallet: done[0].wallet(),
                    events: done,
                });
            }
            run.push(e);
        }
        if let Some(first) = run.first() {
            records.push(Record::Events {
                wallet: first.wallet(),
                events: run,
            });
        }
    }
    records
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Recovery through the lazy load (wallets kept packed, decoded when
    /// the tail touches them) reaches the state of the eager one (every
    /// wallet decoded before the tail): the same digest, summary, ledger
    /// and installed wallets.
    #[test]
    fn the_lazy_load_recovers_the_eager_state(
        before in prop::collection::vec(step(), 0..40),
        after in prop::collection::vec(step(), 0..40),
    ) {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let mut ledger = Ledger::new(EngineConfig::default());
        let mut opening = Image::from_ledger(Ledger::new(EngineConfig::default()));
        for i in 0..5u8 {
            let record = logged(&mut ledger, open_usd(u128::from(i) + 1, 1));
            opening.apply(u64::from(i) + 1, record).unwrap_or_else(|e| panic!("{e}"));
        }
        let _ = history(&mut ledger, &before, 1 << 64);
        let mut snapshot = Image::from_ledger(ledger.clone());
        snapshot.position = 100;
        let path = write(&snapshot, &snapshot_dir(dir.path()));
        let tail = history(&mut ledger, &after, 2 << 64);
        // Eager: the snapshot decoded whole, then the tail.
        let mut eager = load(&path);
        eager.decode_all().unwrap_or_else(|e| panic!("{e}"));
        let mut lazy = load(&path);
        for (k, record) in tail.into_iter().enumerate() {
            let lsn = 101 + k as u64;
            eager.apply(lsn, record.clone()).unwrap_or_else(|e| panic!("{e}"));
            lazy.apply(lsn, record).unwrap_or_else(|e| panic!("{e}"));
        }
        prop_assert_eq!(lazy.digest().ok(), eager.digest().ok());
        prop_assert_eq!(lazy.digest().ok(), Image::from_ledger(ledger.clone()).digest().ok());
        prop_assert_eq!(lazy.summary().ok(), eager.summary().ok());
        // Written again, the lazy image reads back as the eager one.
        let again = write(&lazy, &snapshot_dir(dir.path()).join("again"));
        let mut reread = load(&again);
        reread.decode_all().unwrap_or_else(|e| panic!("{e}"));
        prop_assert_eq!(&reread.ledger, &ledger);
        // The transfers toward each wallet: seeded from the snapshot's
        // records and kept from the tail's events, as a ledger's records
        // imply them.
        let expected = incoming(&mut Image::from_ledger(ledger.clone()));
        prop_assert_eq!(expected.1, queued_in(&ledger));
        prop_assert_eq!(incoming(&mut lazy), expected.clone());
        prop_assert_eq!(incoming(&mut eager), expected);
        let (from_lazy, _) = installed(lazy);
        let from_eager: Vec<WalletState> = ledger.wallets().cloned().collect();
        prop_assert_eq!(from_lazy, from_eager);
        reread.check_invariants().map_err(TestCaseError::fail)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// A replay that packs wallets again as it goes (`Image::spill`, here
    /// after 1 to 4 decoded wallets, instead of `SPILL_AT`) builds the state
    /// of one that keeps them all decoded: the same digest, summary,
    /// snapshot file, installed wallets and directory, whether it starts
    /// empty or from a snapshot, and whether it packs them into memory or
    /// a scratch file; and a transaction created twice is still refused
    /// after its creator was packed.
    #[test]
    fn a_replay_that_packs_idle_wallets_builds_the_same_state(
        before in prop::collection::vec(step(), 0..40),
        after in prop::collection::vec(step(), 0..40),
        limit in 1usize..5,
        to_disk in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let spilling = |mut image: Image| {
            if to_disk {
                image.spill_into(&dir.path().join("scratch"));
            }
            image.with_spill_at(limit)
        };
        let mut ledger = Ledger::new(EngineConfig::default());
        let mut log: Vec<Record> = (0..5u8)
            .map(|i| logged(&mut ledger, open_usd(u128::from(i) + 1, 1)))
            .collect();
        log.extend(history(&mut ledger, &before, 1 << 64));
        let at_log = ledger.clone();
        let replay = |mut image: Image, records: &[Record]| {
            let first = image.position + 1;
            for (k, record) in records.iter().enumerate() {
                image
                    .apply(first + k as u64, record.clone())
                    .unwrap_or_else(|e| panic!("{e}"));
            }
            image
        };
        let whole = replay(Image::empty(EngineConfig::default()), &log);
        let spilt = replay(spilling(Image::empty(EngineConfig::default())), &log);
        prop_assert!(spilt.ledger().wallets().len() <= limit);
        prop_assert_eq!(spilt.wallet_count(), whole.wallet_count());
        prop_assert_eq!(spilt.digest().ok(), whole.digest().ok());
        prop_assert_eq!(spilt.summary().ok(), whole.summary().ok());
        // The same file, byte for byte.
        let a = write(&whole, &dir.path().join("whole"));
        let b = write(&spilt, &dir.path().join("spilt"));
        let read = |p: &Path| std::fs::read(p).unwrap_or_else(|e| panic!("{e}"));
        prop_assert!(read(&a) == read(&b), "the snapshot files differ");
        // From that snapshot, the tail, spilling again.
        let tail = history(&mut ledger, &after, 2 << 64);
        let mut from_snapshot = replay(spilling(load(&a)), &tail);
        prop_assert_eq!(
            from_snapshot.digest().ok(),
            Image::from_ledger(ledger.clone()).digest().ok()
        );
        // The transfers toward each wallet, kept from the events alone
        // (replay from the start) and from a snapshot's seed and the tail.
        let from_start = incoming(&mut replay(Image::empty(EngineConfig::default()), &log));
        prop_assert_eq!(from_start.1, queued_in(&at_log));
        prop_assert_eq!(from_start, incoming(&mut Image::from_ledger(at_log.clone())));
        prop_assert_eq!(
            incoming(&mut from_snapshot),
            incoming(&mut Image::from_ledger(ledger.clone()))
        );
        // A transaction of a packed wallet, created again, is refused; the
        // same credit under a new id is taken.
        let created = at_log.wallets().find_map(|w| {
            let t = w.txns().find(|t| !t.is_inbound_record())?;
            let other = at_log.wallets().map(|o| o.id).find(|o| *o != w.id)?;
            Some((t.id, other))
        });
        if let Some((txn, other)) = created {
            let credit = |id: TxnId| {
                let mut copy = at_log.clone();
                logged(&mut copy, Op::Credit {
                    wallet: other,
                    txn: id,
                    asset: usd(),
                    amount: Decimal::new(1, 2),
                    pending: false,
                    info: TxnInfo::default(),
                })
            };
            let Record::Events { wallet, mut events } = credit(TxnId::from_u128(7 << 64)) else {
                panic!("a credit logs events");
            };
            let probe = || replay(spilling(Image::empty(EngineConfig::default())), &log);
            let mut fresh = probe();
            let at = fresh.position + 1;
            let ok = Record::Events { wallet, events: events.clone() };
            prop_assert!(fresh.apply(at, ok).is_ok());
            for e in &mut events {
                if let Event::CreditAccepted { txn: t, .. } = e {
                    *t = txn;
                }
            }
            let mut reused = probe();
            let refused = reused.apply(at, Record::Events { wallet, events });
            prop_assert!(refused.is_err(), "{txn} created twice was taken");
        }
        // Installed: the same wallets, and every transaction findable.
        let (from_whole, d_whole) = installed(whole);
        let (from_spilt, d_spilt) = installed(spilt);
        prop_assert_eq!(&from_spilt, &from_whole);
        for w in &from_whole {
            prop_assert_eq!(d_spilt.wallets_of(w.spec.client), d_whole.wallets_of(w.spec.client));
            for t in w.txns().filter(|t| !t.is_inbound_record()) {
                prop_assert_eq!(d_spilt.wallet_of_txn(t.id), Some(w.id));
                prop_assert_eq!(d_whole.wallet_of_txn(t.id), Some(w.id));
            }
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
    let wallets: Vec<WalletRef<'_>> = good.ledger.wallets().map(WalletRef::Live).collect();
    let section = encode_wallets(&wallets, &Stored::default()).unwrap_or_else(|e| panic!("{e}"));
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

/// A streamed load (recovery's and the snapshotter's: the file never held
/// whole) builds what the in-memory load builds, across many sections, and
/// refuses every file cut short or damaged: it decodes sections as they
/// come, so only the footer's checks catch some of these.
#[test]
fn a_streamed_load_builds_the_same_image_and_refuses_damaged_files() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    // More wallets than one section holds, some awaiting receipts.
    let good = image(WALLETS_PER_SECTION as u128 + 100);
    let path = write(&good, &snapshot_dir(dir.path()));
    let stream = |p: &Path| {
        SnapshotStream::open(p)
            .map_err(ImageError::from)
            .and_then(|s| Image::from_stream(s, EngineConfig::default()))
    };
    let streamed = stream(&path).unwrap_or_else(|e| panic!("{e}"));
    let in_memory = load_in_memory(&path);
    assert_eq!(streamed.digest().ok(), in_memory.digest().ok());
    assert_eq!(streamed.digest().ok(), good.digest().ok());
    assert_eq!(streamed.summary().ok(), in_memory.summary().ok());
    assert_eq!(streamed.wallet_count(), good.wallet_count());
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{e}"));
    let bad = dir.path().join("bad.msgpack");
    let n = bytes.len();
    let cuts = (0..n).step_by(4_099).chain(n - 200..n);
    for cut in cuts {
        std::fs::write(&bad, &bytes[..cut]).unwrap_or_else(|e| panic!("{e}"));
        assert!(stream(&bad).is_err(), "cut at {cut} of {n} was accepted");
    }
    // The last 200 bytes (the end of the last section, the footer), and a
    // stride through the rest.
    for at in (0..n - 200).step_by(4_001).chain(n - 200..n) {
        let mut flipped = bytes.clone();
        flipped[at] ^= 0x10;
        std::fs::write(&bad, &flipped).unwrap_or_else(|e| panic!("{e}"));
        let err = stream(&bad).err();
        assert!(
            err.as_ref().is_some_and(|e| e.0.contains("bad.msgpack")),
            "byte {at} flipped: {err:?}"
        );
    }
    let mut longer = bytes.clone();
    longer.push(0);
    std::fs::write(&bad, &longer).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        stream(&bad).is_err(),
        "a byte after the footer was accepted"
    );
}

/// `image` with `n` idempotency records answered at times 1..=n (keys
/// `k1`…, client 1; each body names its key).
fn with_records(mut image: Image, n: usize) -> Image {
    for i in 1..=n {
        let record = Record::Answer {
            client: ClientId::from_u128(1),
            key: format!("k{i}"),
            fingerprint: [7; 32],
            at: i64::try_from(i).unwrap_or(i64::MAX),
            status: 201,
            body: AnswerBody::from(format!(r#"{{"data":{{"key":"k{i}"}}}}"#).as_str()),
        };
        let lsn = image.position + 1;
        image.apply(lsn, record).unwrap_or_else(|e| panic!("{e}"));
    }
    image
}

#[test]
fn an_image_keeps_a_files_bulk_in_it_and_writes_the_same_snapshot() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    // Two sections of records and more than one of wallets.
    let good = with_records(
        image(WALLETS_PER_SECTION as u128 + 10),
        RECORDS_PER_SECTION + 7,
    );
    let path = write(&good, &snapshot_dir(dir.path()));
    let mut streamed = load(&path);
    let in_memory = load_in_memory(&path);
    assert_eq!(streamed.idempotency_len(), RECORDS_PER_SECTION + 7);
    for key in ["k1", "k16390", "k16391"] {
        let read = |img: &Image| {
            img.idempotency_record(ClientId::from_u128(1), key)
                .map(|r| r.unwrap_or_else(|e| panic!("{e}")))
        };
        assert_eq!(read(&streamed), read(&good), "{key}");
        assert_eq!(read(&in_memory), read(&good), "{key}");
    }
    // Each writes the file it was loaded from, byte for byte: the records
    // in their order, the wallets as they were.
    let again = |img: &Image, name: &str| {
        let to = dir.path().join(name);
        std::fs::read(write(img, &to)).unwrap_or_else(|e| panic!("{e}"))
    };
    let original = std::fs::read(&path).unwrap_or_else(|e| panic!("{e}"));
    assert!(again(&streamed, "streamed") == original);
    assert!(again(&in_memory, "in_memory") == original);

    // The log's tail forgets one record of the file, answers one anew,
    // and adds one; expiry drops the oldest. The file's records are read
    // again around them.
    let forget = Record::Forget {
        client: ClientId::from_u128(1),
        key: "k2".into(),
    };
    let mut eager = with_records(
        image(WALLETS_PER_SECTION as u128 + 10),
        RECORDS_PER_SECTION + 7,
    );
    for img in [&mut streamed, &mut eager] {
        let lsn = img.position + 1;
        img.apply(lsn, forget.clone())
            .unwrap_or_else(|e| panic!("{e}"));
        for key in ["k3", "new"] {
            let record = Record::Answer {
                client: ClientId::from_u128(1),
                key: key.into(),
                fingerprint: [8; 32],
                at: 20_000,
                status: 200,
                body: AnswerBody::from("{}"),
            };
            let lsn = img.position + 1;
            img.apply(lsn, record).unwrap_or_else(|e| panic!("{e}"));
        }
        img.expire_idempotency(20_000, 20_000 - 1);
    }
    assert_eq!(streamed.idempotency_len(), RECORDS_PER_SECTION + 7 - 1);
    assert!(again(&streamed, "tail") == again(&eager, "eager"));
}

#[tokio::test]
async fn records_past_the_memory_limit_go_to_the_scratch_file_and_come_back() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let body = |key: &str| format!(r#"{{"data":{{"key":"{key}"}}}}"#);
    // Past the limit (65,536), one record answered twice (its second
    // answer, in memory after the spill, is the one kept) and one
    // forgotten after it was spilt.
    let n = 70_000;
    let fill = |img: &mut Image| {
        let mut next = |record: Record| {
            let lsn = img.position + 1;
            img.apply(lsn, record).unwrap_or_else(|e| panic!("{e}"));
        };
        let answer = |key: &str, status: u16| Record::Answer {
            client: ClientId::from_u128(1),
            key: key.into(),
            fingerprint: [1; 32],
            at: 5,
            status,
            body: AnswerBody::from(body(key).as_str()),
        };
        for i in 0..n {
            next(answer(&format!("k{i}"), 201));
        }
        next(answer("k1", 200));
        next(Record::Forget {
            client: ClientId::from_u128(1),
            key: "k2".into(),
        });
    };
    let mut kept = Image::empty(EngineConfig::default());
    fill(&mut kept);
    let mut spilt = Image::empty(EngineConfig::default());
    let scratch = dir.path().join("scratch");
    spilt.spill_into(&scratch);
    fill(&mut spilt);
    assert_eq!(spilt.idempotency_len(), n - 1);
    // The scratch file is unnamed: the directory was made, nothing shows.
    let names = std::fs::read_dir(&scratch)
        .unwrap_or_else(|e| panic!("nothing spilt: {e}"))
        .count();
    assert_eq!(names, 0);
    let file = |img: &Image, name: &str| {
        std::fs::read(write(img, &dir.path().join(name))).unwrap_or_else(|e| panic!("{e}"))
    };
    assert!(file(&spilt, "spilt") == file(&kept, "kept"));
    let status = |key: &str| {
        spilt
            .idempotency_record(ClientId::from_u128(1), key)
            .map(|r| match r.unwrap_or_else(|e| panic!("{e}")).outcome {
                IdempotencyOutcome::Answered { status, .. } => status,
                IdempotencyOutcome::Claimed { .. } => 0,
            })
    };
    assert_eq!(status("k1"), Some(200));
    assert_eq!(status("k2"), None);
    assert_eq!(status("k3"), Some(201));
    // Installed, a retry of a spilt record gets its answer.
    let (directory, idempotency, funding) = stores();
    spilt
        .install(&directory, &idempotency, &funding, 5)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(idempotency.len(), n - 1);
    assert_eq!(replayed(&idempotency, "k3", 5).await, body("k3"));
    assert_eq!(replayed(&idempotency, "k69999", 5).await, body("k69999"));
}

#[test]
fn large_answers_go_to_the_scratch_file_before_the_record_count_says_so() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let scratch = dir.path().join("scratch");
    let mut img = Image::empty(EngineConfig::default());
    img.spill_into(&scratch);
    // 40 answers of 1 MB that compress little (hex of a hash chain):
    // more than 16 MB kept, far fewer than 65,536 records.
    let mut seed = blake3::hash(b"seed");
    let mut bodies = Vec::new();
    for i in 0..40 {
        let mut text = String::with_capacity(1 << 20);
        while text.len() < 1 << 20 {
            seed = blake3::hash(seed.as_bytes());
            text.push_str(&seed.to_hex());
        }
        let record = Record::Answer {
            client: ClientId::from_u128(1),
            key: format!("big{i}"),
            fingerprint: [1; 32],
            at: 5,
            status: 201,
            body: AnswerBody::new(bytes::Bytes::from(text.clone())),
        };
        bodies.push(text);
        let lsn = img.position + 1;
        img.apply(lsn, record).unwrap_or_else(|e| panic!("{e}"));
    }
    assert!(scratch.is_dir(), "nothing was spilt");
    for (i, text) in bodies.iter().enumerate() {
        let entry = img
            .idempotency_record(ClientId::from_u128(1), &format!("big{i}"))
            .map(|r| r.unwrap_or_else(|e| panic!("{e}")));
        let Some(IdempotencyEntry {
            outcome: IdempotencyOutcome::Answered { body, .. },
            ..
        }) = entry
        else {
            panic!("big{i} lost")
        };
        assert!(body.bytes().unwrap_or_else(|e| panic!("{e}")) == text.as_bytes());
    }
}

#[test]
fn a_file_changed_after_its_load_is_refused_when_read_again() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let good = with_records(image(40), 30);
    let path = write(&good, &snapshot_dir(dir.path()));
    let original = std::fs::read(&path).unwrap_or_else(|e| panic!("{e}"));
    // A wallet's bytes (near the end: the wallet sections come last), and
    // a record's (the first idempotency section follows the clients' and
    // customers'): each is caught by the reads that need it.
    let wallet_byte = original.len() - 300;
    let record_byte = original
        .windows(3)
        .position(|w| w == b"k17")
        .unwrap_or_else(|| panic!("no record k17 in the file"));
    for at in [wallet_byte, record_byte] {
        std::fs::write(&path, &original).unwrap_or_else(|e| panic!("{e}"));
        let loaded = load(&path);
        let mut changed = original.clone();
        changed[at] ^= 0x01;
        std::fs::write(&path, &changed).unwrap_or_else(|e| panic!("{e}"));
        let err = loaded
            .write_snapshot(
                &dir.path().join(format!("w{at}")),
                "snp_01JABCDEFGHJKMNPQRSTVWXYZ2",
                1,
            )
            .err()
            .unwrap_or_else(|| panic!("a file changed at byte {at} was copied"));
        assert!(err.0.contains("changed since it was checked"), "{err}");
        let (d, i, f) = stores();
        let err = loaded
            .install(&d, &i, &f, 0)
            .err()
            .unwrap_or_else(|| panic!("a file changed at byte {at} was installed"));
        assert!(err.0.contains("changed since it was checked"), "{err}");
    }
    // The wallet's change is caught by the digest too (records are not in it).
    std::fs::write(&path, &original).unwrap_or_else(|e| panic!("{e}"));
    let loaded = load(&path);
    let mut changed = original.clone();
    changed[wallet_byte] ^= 0x01;
    std::fs::write(&path, &changed).unwrap_or_else(|e| panic!("{e}"));
    assert!(loaded.digest().is_err());
}

#[test]
fn every_damaged_byte_of_a_wallet_is_refused_where_decode_would_refuse_it() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let good = image(3);
    let states: Vec<&WalletState> = good.ledger.wallets().collect();
    let target = pack::to_bytes(states[1]);
    for at in 0..target.len() {
        for value in [0xc1, 0x00, 0x93, target[at] ^ 0x01] {
            let mut bad = target.clone();
            bad[at] = value;
            if pack::decode(&bad).is_ok() {
                continue;
            }
            // The section as the writer frames it, wallet 1 damaged.
            let mut section = Vec::new();
            settle_engine::msgpack::write_map_len(&mut section, 1);
            settle_engine::msgpack::write_str(&mut section, PACKED_WALLETS);
            settle_engine::msgpack::write_array_len(&mut section, 3);
            for (k, w) in states.iter().enumerate() {
                let bytes = if k == 1 {
                    bad.clone()
                } else {
                    pack::to_bytes(w)
                };
                settle_engine::msgpack::write_bin(&mut section, &bytes);
            }
            let path = file_with_sections(dir.path(), FORMAT_VERSION, &[section]);
            let file = SnapshotFile::open(&path).unwrap_or_else(|e| panic!("{e}"));
            let Err(err) = Image::from_snapshot(&file, EngineConfig::default()) else {
                panic!("byte {at} set to {value:#04x} was accepted")
            };
            assert!(
                err.0.contains(&path.display().to_string())
                    && err.0.contains("section 0 (at byte ")
                    && err.0.contains("wallet 1 does not decode"),
                "{err}"
            );
            std::fs::remove_file(&path).unwrap_or_else(|e| panic!("{e}"));
        }
    }
}

#[test]
fn wallets_that_decode_but_contradict_each_other_are_refused() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let good = image(4);
    let states: Vec<WalletState> = good.ledger.wallets().cloned().collect();
    let live = |list: &[&WalletState]| -> Vec<u8> {
        let refs: Vec<WalletRef<'_>> = list.iter().map(|w| WalletRef::Live(w)).collect();
        encode_wallets(&refs, &Stored::default()).unwrap_or_else(|e| panic!("{e}"))
    };
    // One wallet twice (in two sections: each section alone is sound); one
    // that created nothing, so that only its id repeats.
    let mut fresh = Ledger::new(EngineConfig::default());
    let _ = logged(&mut fresh, open_usd(50, 1));
    let empty = fresh
        .wallet(WalletId::from_u128(50))
        .unwrap_or_else(|| panic!("not opened"));
    let twice = [live(&[&states[0], empty]), live(&[empty])];
    // Two wallets that created the same transaction: wallet 3's records
    // under wallet 9's id.
    let mut copy = states[2].clone();
    copy.id = WalletId::from_u128(9);
    let created_twice = [live(&[&states[2], &copy])];
    for (sections, says) in [
        (&twice[..], "appears twice"),
        (&created_twice[..], "created by"),
    ] {
        let path = file_with_sections(dir.path(), FORMAT_VERSION, sections);
        let file = SnapshotFile::open(&path).unwrap_or_else(|e| panic!("{e}"));
        let Err(err) = Image::from_snapshot(&file, EngineConfig::default()) else {
            panic!("contradicting wallets were accepted ({says})")
        };
        assert!(
            err.0.contains(&path.display().to_string())
                && err.0.contains("do not form a consistent state")
                && err.0.contains(says),
            "{err}"
        );
        std::fs::remove_file(&path).unwrap_or_else(|e| panic!("{e}"));
    }
    // Sound wallets under a header whose counts and totals are not theirs.
    let path = file_with_sections(
        dir.path(),
        FORMAT_VERSION,
        &[live(&states.iter().collect::<Vec<_>>())],
    );
    let file = SnapshotFile::open(&path).unwrap_or_else(|e| panic!("{e}"));
    let Err(err) = Image::from_snapshot(&file, EngineConfig::default()) else {
        panic!("a header that does not match was accepted")
    };
    assert!(err.0.contains("does not match the header"), "{err}");
}

/// What a retry of `key` (client 1, fingerprint [1; 32]) is answered.
async fn replayed(
    store: &std::sync::Arc<IdempotencyStore>,
    key: &str,
    now_ms: i64,
) -> bytes::Bytes {
    use crate::http::idempotency::Begin;
    match store
        .begin(ClientId::from_u128(1), key, [1; 32], now_ms)
        .await
    {
        Begin::Replay(a) => a.body.bytes().unwrap_or_else(|e| panic!("{e}")),
        other => panic!("{key}: not a replay but {other:?}"),
    }
}

#[tokio::test]
async fn answers_survive_a_snapshot_compressed_or_not_and_format_2_files_still_read() {
    use crate::answer_body::AnswerBody;
    use bytes::Bytes;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let at = 1_700_000_000_000;
    let small = Bytes::from_static(br#"{"data":{"id":"txn_1"}}"#);
    let large = Bytes::from(
        r#"{"status":201,"data":{"id":"txn_01M80V4N93E3VD74J7270G1CZK","amount":"1.00"}},"#
            .repeat(500),
    );

    // This build's format: the large body is kept compressed, and both
    // come back as they were sent.
    let mut img = image(2);
    for (lsn, key, body) in [(43, "small", &small), (44, "large", &large)] {
        let record = Record::Answer {
            client: ClientId::from_u128(1),
            key: key.into(),
            fingerprint: [1; 32],
            at,
            status: 201,
            body: AnswerBody::new(body.clone()),
        };
        img.apply(lsn, record).unwrap_or_else(|e| panic!("{e}"));
    }
    let kept = |img: &Image, key: &str| {
        img.idempotency_record(ClientId::from_u128(1), key)
            .map(|e| e.unwrap_or_else(|e| panic!("{e}")).outcome)
    };
    assert!(matches!(
        kept(&img, "large"),
        Some(IdempotencyOutcome::Answered {
            body: AnswerBody::Lz4(_),
            ..
        })
    ));
    let loaded = load(&write(&img, dir.path()));
    assert_eq!(kept(&loaded, "large"), kept(&img, "large"));
    let (directory, idempotency, funding) = stores();
    loaded
        .install(&directory, &idempotency, &funding, at)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(replayed(&idempotency, "small", at).await, small);
    assert_eq!(replayed(&idempotency, "large", at).await, large);

    // Format 2 (before compression) wrote every body as a string; such a
    // file still reads.
    let old = dir.path().join("old");
    std::fs::create_dir(&old).unwrap_or_else(|e| panic!("{e}"));
    let plain = IdempotencyEntry {
        client: ClientId::from_u128(1),
        key: "old".into(),
        fingerprint: [1; 32],
        at,
        outcome: IdempotencyOutcome::Answered {
            status: 201,
            body: AnswerBody::Plain(large.clone()),
        },
    };
    let section = encode(&Section::Idempotency(vec![plain])).unwrap_or_else(|e| panic!("{e}"));
    let path = file_with_sections(&old, 2, &[section]);
    let loaded = load(&path);
    let (directory, idempotency, funding) = stores();
    loaded
        .install(&directory, &idempotency, &funding, at)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(replayed(&idempotency, "old", at).await, large);
}
