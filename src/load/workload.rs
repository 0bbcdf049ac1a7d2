//! What each request does: operations drawn from the mix, on wallets
//! drawn uniformly or with Zipf skew, with random amounts; a reservation is
//! followed by its capture. Each connection has its own seeded random
//! source, so a seed gives the same sequence of choices.

use super::args::{Mix, OpKind};
use bytes::Bytes;
use hyper::Method;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Zipf};
use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::Arc;

/// The asset every wallet of a run holds.
pub const ASSET: &str = "USD";

/// What all connections share.
#[derive(Debug)]
pub struct Workload {
    pub wallets: Vec<String>,
    mix: Vec<(OpKind, u32)>,
    total_weight: u32,
    /// `None`: uniform.
    zipf: Option<Zipf<f64>>,
}

impl Workload {
    pub fn new(wallets: Vec<String>, mix: &Mix, zipf: f64) -> Result<Workload, String> {
        let n = wallets.len();
        let zipf = if zipf > 0.0 && n > 1 {
            #[allow(
                clippy::cast_precision_loss,
                reason = "wallet counts are far below 2^52"
            )]
            let n = n as f64;
            Some(Zipf::new(n, zipf).map_err(|e| format!("--zipf: {e}"))?)
        } else {
            None
        };
        Ok(Workload {
            wallets,
            mix: mix.weights.clone(),
            total_weight: mix.total(),
            zipf,
        })
    }
}

/// One operation, chosen but not yet written out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Transfer { from: usize, to: usize, cents: u32 },
    Credit { wallet: usize, cents: u32 },
    Debit { wallet: usize, cents: u32 },
    Reserve { wallet: usize, cents: u32 },
    Capture { txn: String },
}

impl Op {
    pub fn kind(&self) -> OpKind {
        match self {
            Op::Transfer { .. } => OpKind::Transfer,
            Op::Credit { .. } => OpKind::Credit,
            Op::Debit { .. } => OpKind::Debit,
            Op::Reserve { .. } => OpKind::Reserve,
            Op::Capture { .. } => OpKind::Capture,
        }
    }
}

/// Cents as a USD decimal string (`"12.05"`): exact, never a float.
fn amount(cents: u32) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

/// One connection's source of operations.
#[derive(Debug)]
pub struct ConnWork {
    shared: Arc<Workload>,
    rng: SmallRng,
    /// Reservations made and not yet captured, oldest first.
    held: VecDeque<String>,
}

impl ConnWork {
    pub fn new(shared: Arc<Workload>, seed: u64, conn: usize) -> ConnWork {
        // Nearby seeds give unrelated streams (SmallRng seeds through SplitMix).
        let seed = seed ^ (conn as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        ConnWork {
            shared,
            rng: SmallRng::seed_from_u64(seed),
            held: VecDeque::new(),
        }
    }

    /// A reservation that was made: its capture comes next.
    pub fn held(&mut self, txn: String) {
        self.held.push_back(txn);
    }

    /// Reservations not captured yet (taken out).
    pub fn take_held(&mut self) -> Vec<String> {
        self.held.drain(..).collect()
    }

    fn wallet(&mut self) -> usize {
        let n = self.shared.wallets.len();
        match &self.shared.zipf {
            Some(z) => {
                let rank = z.sample(&mut self.rng);
                #[allow(
                    clippy::cast_possible_truncation,
                    clippy::cast_sign_loss,
                    reason = "Zipf samples whole numbers from 1 to the wallet count"
                )]
                let i = (rank as usize).saturating_sub(1);
                i.min(n.saturating_sub(1))
            }
            None => self.rng.random_range(0..n),
        }
    }

    /// The next operation: a pending capture first, else one from the mix.
    pub fn next_op(&mut self) -> Op {
        if let Some(txn) = self.held.pop_front() {
            return Op::Capture { txn };
        }
        let mut pick = self.rng.random_range(0..self.shared.total_weight.max(1));
        let mut kind = OpKind::Transfer;
        for (k, w) in &self.shared.mix {
            if pick < *w {
                kind = *k;
                break;
            }
            pick -= w;
        }
        let cents = self.rng.random_range(1..=1_000);
        match kind {
            OpKind::Transfer => {
                let n = self.shared.wallets.len();
                let from = self.wallet();
                let mut to = self.wallet();
                let mut tries = 0;
                while to == from && tries < 8 {
                    to = self.wallet();
                    tries += 1;
                }
                if to == from {
                    to = (from + 1) % n.max(1);
                }
                Op::Transfer { from, to, cents }
            }
            OpKind::Credit => Op::Credit {
                wallet: self.wallet(),
                cents,
            },
            OpKind::Debit => Op::Debit {
                wallet: self.wallet(),
                cents,
            },
            OpKind::Reserve | OpKind::Capture => Op::Reserve {
                wallet: self.wallet(),
                cents,
            },
        }
    }

    /// The operation as a request of its own: method, path and body.
    /// Debits and transfers that do not fit are refused (409
    /// `insufficient_funds`), not queued: a queued item would block its
    /// wallet's later payments.
    pub fn request(&self, op: &Op) -> (Method, String, Bytes) {
        let w = &self.shared.wallets;
        let (path, body) = match op {
            Op::Transfer { from, to, cents } => (
                "/v1/transfers".to_owned(),
                format!(
                    r#"{{"fromWalletId":"{}","toWalletId":"{}","asset":"{ASSET}","amount":"{}","onInsufficientFunds":"reject"}}"#,
                    w[*from],
                    w[*to],
                    amount(*cents)
                ),
            ),
            Op::Credit { wallet, cents } => (
                format!("/v1/wallets/{}/credits", w[*wallet]),
                format!(r#"{{"asset":"{ASSET}","amount":"{}"}}"#, amount(*cents)),
            ),
            Op::Debit { wallet, cents } => (
                format!("/v1/wallets/{}/debits", w[*wallet]),
                format!(
                    r#"{{"asset":"{ASSET}","amount":"{}","onInsufficientFunds":"reject"}}"#,
                    amount(*cents)
                ),
            ),
            Op::Reserve { wallet, cents } => (
                format!("/v1/wallets/{}/reservations", w[*wallet]),
                format!(r#"{{"asset":"{ASSET}","amount":"{}"}}"#, amount(*cents)),
            ),
            Op::Capture { txn } => (format!("/v1/transactions/{txn}/capture"), "{}".to_owned()),
        };
        (Method::POST, path, Bytes::from(body))
    }

    /// The operation as an item of `POST /v1/batch`, appended to `out`.
    pub fn batch_item(&self, op: &Op, out: &mut String) {
        let w = &self.shared.wallets;
        // Writing to a String cannot fail.
        let _ = match op {
            Op::Transfer { from, to, cents } => write!(
                out,
                r#"{{"op":"transfer","fromWalletId":"{}","toWalletId":"{}","asset":"{ASSET}","amount":"{}","onInsufficientFunds":"reject"}}"#,
                w[*from],
                w[*to],
                amount(*cents)
            ),
            Op::Credit { wallet, cents } => write!(
                out,
                r#"{{"op":"credit","walletId":"{}","asset":"{ASSET}","amount":"{}"}}"#,
                w[*wallet],
                amount(*cents)
            ),
            Op::Debit { wallet, cents } => write!(
                out,
                r#"{{"op":"debit","walletId":"{}","asset":"{ASSET}","amount":"{}","onInsufficientFunds":"reject"}}"#,
                w[*wallet],
                amount(*cents)
            ),
            Op::Reserve { wallet, cents } => write!(
                out,
                r#"{{"op":"reserve","walletId":"{}","asset":"{ASSET}","amount":"{}"}}"#,
                w[*wallet],
                amount(*cents)
            ),
            Op::Capture { txn } => write!(out, r#"{{"op":"capture","transactionId":"{txn}"}}"#),
        };
    }
}

/// A `POST /v1/batch` body of these operations.
pub fn batch_body(work: &ConnWork, ops: &[Op]) -> Bytes {
    let mut out = String::with_capacity(32 + ops.len() * 190);
    out.push_str(r#"{"operations":["#);
    for (i, op) in ops.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        work.batch_item(op, &mut out);
    }
    out.push_str("]}");
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn work(mix: &str, zipf: f64, n: usize) -> ConnWork {
        let wallets = (0..n).map(|i| format!("wal_{i}")).collect();
        let mix = Mix::parse(mix).unwrap();
        ConnWork::new(Arc::new(Workload::new(wallets, &mix, zipf).unwrap()), 7, 0)
    }

    #[test]
    fn amounts_are_exact_cents() {
        assert_eq!(amount(1), "0.01");
        assert_eq!(amount(1000), "10.00");
        assert_eq!(amount(1205), "12.05");
    }

    #[test]
    fn the_mix_is_followed_and_captures_follow_reserves() {
        let mut w = work("transfer=50,reserve=50", 0.0, 10);
        let mut counts = [0u32; 5];
        for _ in 0..10_000 {
            let op = w.next_op();
            if let Op::Transfer { from, to, .. } = op {
                assert_ne!(from, to);
            }
            counts[op.kind().index()] += 1;
        }
        assert_eq!(counts[OpKind::Credit.index()], 0);
        assert!((4_500..5_500).contains(&counts[OpKind::Transfer.index()]));
        w.held("txn_1".into());
        assert_eq!(
            w.next_op(),
            Op::Capture {
                txn: "txn_1".into()
            }
        );
    }

    #[test]
    fn zipf_makes_a_few_wallets_hot_and_seeds_repeat() {
        let mut w = work("credit=1", 1.2, 1_000);
        let mut hits = vec![0u32; 1_000];
        for _ in 0..20_000 {
            if let Op::Credit { wallet, .. } = w.next_op() {
                hits[wallet] += 1;
            }
        }
        // The hottest wallet gets far more than its uniform share (20).
        assert!(hits[0] > 1_000, "{}", hits[0]);
        let mut a = work("transfer=1", 0.0, 50);
        let mut b = work("transfer=1", 0.0, 50);
        for _ in 0..100 {
            assert_eq!(a.next_op(), b.next_op());
        }
    }

    #[test]
    fn bodies_are_json() {
        let mut w = work("transfer=1,credit=1,debit=1,reserve=1", 0.0, 3);
        let mut ops: Vec<Op> = (0..20).map(|_| w.next_op()).collect();
        ops.push(Op::Capture {
            txn: "txn_x".into(),
        });
        for op in &ops {
            let (_, path, body) = w.request(op);
            assert!(path.starts_with("/v1/"));
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert!(v.is_object());
        }
        let v: serde_json::Value = serde_json::from_slice(&batch_body(&w, &ops)).unwrap();
        assert_eq!(v["operations"].as_array().unwrap().len(), 21);
    }
}
