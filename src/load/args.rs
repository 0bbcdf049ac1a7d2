//! `settle load`'s options, and their checks: a `Plan` is a set of options
//! known to make sense (or a clear message saying why not).

use super::client::{BaseUrl, parse_base_url};
use clap::Args;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Args, Debug, Clone)]
pub struct LoadArgs {
    /// The server's base URL: `http://HOST[:PORT]` (plain HTTP/1.1, no path).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Connections held open, one task each (keep-alive, one request at a
    /// time on each).
    #[arg(long, default_value_t = 64)]
    pub connections: usize,
    /// How long to measure (`30s`, `2m`, `1500ms`). The default is 10s
    /// unless `--requests` is given.
    #[arg(long, value_parser = humantime::parse_duration, conflicts_with = "requests")]
    pub duration: Option<Duration>,
    /// How many requests to measure (each carries `--batch` operations).
    #[arg(long)]
    pub requests: Option<u64>,
    /// Open loop: send this many requests per second in all, on a fixed
    /// schedule, whatever the answers do; latency is measured from each
    /// request's intended send time (no coordinated omission). With
    /// `--duration`, nothing is sent after it ends, even when the server has
    /// fallen behind (the report counts the requests not sent). Without `--rate`:
    /// closed loop (each connection sends its next request as soon as the
    /// last is answered).
    #[arg(long, allow_negative_numbers = true)]
    pub rate: Option<f64>,
    /// Wallets to create and fund before the run (a new client each run).
    #[arg(long, default_value_t = 1000)]
    pub wallets: usize,
    /// What each wallet is funded with (USD, a decimal string with at most
    /// 2 decimals, at most 999999999999999.99).
    #[arg(long, default_value = "1000000.00", allow_hyphen_values = true)]
    pub fund: String,
    /// The operation mix, as weights: `transfer=70,credit=10,debit=10,reserve=10`.
    /// A reservation is followed by its capture (also counted as an operation).
    #[arg(long, default_value = "transfer=100")]
    pub mix: String,
    /// Operations per request. 1 sends each operation to its own endpoint;
    /// more sends `POST /v1/batch` with that many operations (at most 8192).
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Hot-wallet skew: wallets are picked with a Zipf distribution of this
    /// exponent (0: uniform; 1: the classic Zipf; larger: hotter).
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    pub zipf: f64,
    /// Seed of the workload's random choices (random if not given; the
    /// report shows the one used).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Run the workload this long first, unmeasured (`2s`).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "0s")]
    pub warmup: Duration,
    /// A request not answered within this long counts as a transport error
    /// (its connection is then replaced); its wait still counts in the
    /// latency, so that a stall shows in the tail.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "30s")]
    pub timeout: Duration,
    /// Worker threads of the load generator itself (it shares the machine
    /// with the server when both run on one host).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// The final report as one JSON object on standard output.
    #[arg(long)]
    pub json: bool,
    /// Write an SVG chart of throughput and latency (p50, p99) per second
    /// (the name must end in .svg; checked before the run).
    #[arg(long, value_name = "FILE.svg")]
    pub chart: Option<PathBuf>,
    /// The admin key (else `SETTLE_ADMIN_KEY`, else `<data-dir>/admin.key`).
    #[arg(long)]
    pub admin_key: Option<String>,
    /// The server's data directory, to read `admin.key` from when no key
    /// is given otherwise.
    #[arg(long, default_value = "./data")]
    pub data_dir: PathBuf,
}

/// Why the options cannot run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptionError(pub String);

impl fmt::Display for OptionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn bad(msg: impl Into<String>) -> OptionError {
    OptionError(msg.into())
}

/// The largest batch the API accepts (API.md).
pub const MAX_BATCH: usize = 8_192;

/// The kinds of operation the mix chooses from (captures follow reserves).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum OpKind {
    Transfer,
    Credit,
    Debit,
    Reserve,
    Capture,
}

impl OpKind {
    /// The kinds a mix may name.
    pub const MIXABLE: [OpKind; 4] = [
        OpKind::Transfer,
        OpKind::Credit,
        OpKind::Debit,
        OpKind::Reserve,
    ];
    pub const ALL: [OpKind; 5] = [
        OpKind::Transfer,
        OpKind::Credit,
        OpKind::Debit,
        OpKind::Reserve,
        OpKind::Capture,
    ];

    pub fn name(self) -> &'static str {
        match self {
            OpKind::Transfer => "transfer",
            OpKind::Credit => "credit",
            OpKind::Debit => "debit",
            OpKind::Reserve => "reserve",
            OpKind::Capture => "capture",
        }
    }

    pub fn index(self) -> usize {
        match self {
            OpKind::Transfer => 0,
            OpKind::Credit => 1,
            OpKind::Debit => 2,
            OpKind::Reserve => 3,
            OpKind::Capture => 4,
        }
    }
}

/// Weights of the mixable kinds (at least one non-zero).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mix {
    /// (kind, weight) with weight > 0, in the order given.
    pub weights: Vec<(OpKind, u32)>,
}

impl Mix {
    pub fn total(&self) -> u32 {
        self.weights.iter().map(|(_, w)| *w).sum()
    }

    pub fn weight(&self, kind: OpKind) -> u32 {
        self.weights
            .iter()
            .filter(|(k, _)| *k == kind)
            .map(|(_, w)| *w)
            .sum()
    }

    /// `transfer=70,credit=10` (weights, not necessarily summing to 100).
    pub fn parse(text: &str) -> Result<Mix, OptionError> {
        let mut weights: Vec<(OpKind, u32)> = Vec::new();
        let names = "transfer, credit, debit, reserve";
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, weight) = part.split_once('=').ok_or_else(|| {
                bad(format!(
                    "--mix: `{part}` is not NAME=WEIGHT (e.g. transfer=70,credit=10,debit=10,reserve=10)"
                ))
            })?;
            let name = name.trim();
            let kind = OpKind::MIXABLE
                .into_iter()
                .find(|k| k.name() == name)
                .ok_or_else(|| {
                    bad(format!(
                        "--mix: unknown operation `{name}` (one of: {names})"
                    ))
                })?;
            let weight: u32 = weight.trim().parse().map_err(|_| {
                bad(format!(
                    "--mix: the weight of {name} must be a whole number from 0 to 1000000, not `{}`",
                    weight.trim()
                ))
            })?;
            if weight > 1_000_000 {
                return Err(bad(format!(
                    "--mix: the weight of {name} must be at most 1000000"
                )));
            }
            if weights.iter().any(|(k, _)| *k == kind) {
                return Err(bad(format!("--mix: {name} is named twice")));
            }
            weights.push((kind, weight));
        }
        weights.retain(|(_, w)| *w > 0);
        if weights.is_empty() {
            return Err(bad(format!(
                "--mix: no operation has a weight above 0 (names: {names})"
            )));
        }
        Ok(Mix { weights })
    }
}

impl fmt::Display for Mix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .weights
            .iter()
            .map(|(k, w)| format!("{}={w}", k.name()))
            .collect();
        f.write_str(&parts.join(","))
    }
}

/// When the measured run ends.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Bound {
    Duration(Duration),
    Requests(u64),
}

/// Checked options.
#[derive(Debug, Clone)]
pub struct Plan {
    pub url: BaseUrl,
    pub connections: usize,
    pub bound: Bound,
    /// Requests per second in all (open loop), or `None` (closed loop).
    pub rate: Option<f64>,
    pub wallets: usize,
    pub fund: String,
    pub mix: Mix,
    pub batch: usize,
    pub zipf: f64,
    pub seed: u64,
    pub warmup: Duration,
    pub timeout: Duration,
    pub threads: usize,
    pub json: bool,
    pub chart: Option<PathBuf>,
    pub admin_key: String,
}

/// The largest `--fund`: 15 integer digits, far below the server's limit
/// for a balance (28 digits), so that a run's credits and transfers into a
/// wallet cannot reach that limit.
const MAX_FUND: &str = "999999999999999.99";

/// `1.5e3` as the plain decimal `1500` (digits only; `None` if it is not a
/// number in that form or its exponent is absurd).
fn plain_from_scientific(text: &str) -> Option<String> {
    let (mantissa, exp) = text.split_once(['e', 'E'])?;
    let exp: i64 = exp.parse().ok().filter(|e: &i64| e.abs() <= 64)?;
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if int.is_empty() || !(int.bytes().chain(frac.bytes())).all(|b| b.is_ascii_digit()) {
        return None;
    }
    let digits = format!("{int}{frac}");
    // Where the point goes in `digits`, padded with zeros on either side.
    let point = i64::try_from(int.len()).ok()? + exp;
    let (int, frac) = if point <= 0 {
        let zeros = "0".repeat(usize::try_from(-point).ok()?);
        ("0".to_owned(), format!("{zeros}{digits}"))
    } else {
        let point = usize::try_from(point).ok()?;
        if point >= digits.len() {
            (
                format!("{digits}{}", "0".repeat(point - digits.len())),
                String::new(),
            )
        } else {
            (digits[..point].to_owned(), digits[point..].to_owned())
        }
    };
    let frac = frac.trim_end_matches('0');
    Some(if frac.is_empty() {
        int
    } else {
        format!("{int}.{frac}")
    })
}

/// A USD amount the server will take for a credit: a plain positive
/// decimal (`digits[.digits]`: no sign, no `5.` or `.5`) with at most 2
/// decimals (trailing zeros aside), at most `MAX_FUND`. An exponent
/// (`1e6`) is written out as the plain decimal sent to the server. Checked
/// here so that a refusal comes before the run's client and wallets exist.
fn check_fund(text: &str) -> Result<String, OptionError> {
    let t = text.trim();
    let scientific = plain_from_scientific(t);
    let plain = scientific.as_deref().unwrap_or(t);
    let not_amount = || {
        bad(format!(
            "--fund: `{text}` is not a positive USD amount with at most 2 decimals (e.g. 1000000.00)"
        ))
    };
    let (int, frac) = match plain.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (plain, None),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(int) || frac.is_some_and(|f| !digits(f)) {
        return Err(not_amount());
    }
    let frac = frac.unwrap_or("");
    if frac.trim_end_matches('0').len() > 2 {
        return Err(bad(format!(
            "--fund: `{text}` has more than 2 decimals (USD has cents)"
        )));
    }
    if !plain.bytes().any(|b| (b'1'..=b'9').contains(&b)) {
        return Err(not_amount());
    }
    if int.trim_start_matches('0').len() > 15 {
        return Err(bad(format!(
            "--fund: `{text}` is too large: at most {MAX_FUND} per wallet"
        )));
    }
    Ok(plain.to_owned())
}

/// `--chart`: an `.svg` (the only format written), in a place it can be
/// written, checked before the run rather than found out after it. A file
/// that is not there yet is created and removed again (a run that then
/// fails leaves no empty chart behind); the run writes it at the end.
fn check_chart(path: &Path) -> Result<(), OptionError> {
    if path.as_os_str().is_empty() {
        return Err(bad("--chart needs a file name"));
    }
    let svg = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("svg"));
    if !svg {
        return Err(bad(format!(
            "--chart {}: the chart is SVG; give a file name ending in .svg",
            path.display()
        )));
    }
    let cannot = |e: std::io::Error| bad(format!("--chart: cannot write {}: {e}", path.display()));
    if path.exists() {
        return std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .map(drop)
            .map_err(cannot);
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(cannot)?;
    // The probe only: the chart itself is written after the run.
    let _ = std::fs::remove_file(path);
    Ok(())
}

/// The admin key: `--admin-key`, else `SETTLE_ADMIN_KEY` (if set and not
/// blank), else `<data-dir>/admin.key`.
fn admin_key(args: &LoadArgs) -> Result<String, OptionError> {
    if let Some(key) = &args.admin_key {
        let key = key.trim();
        if key.is_empty() {
            return Err(bad("--admin-key is empty"));
        }
        return Ok(key.to_owned());
    }
    if let Ok(key) = std::env::var("SETTLE_ADMIN_KEY")
        && !key.trim().is_empty()
    {
        return Ok(key.trim().to_owned());
    }
    let path = args.data_dir.join("admin.key");
    match std::fs::read_to_string(&path) {
        Ok(text) if !text.trim().is_empty() => Ok(text.trim().to_owned()),
        Ok(_) => Err(bad(format!(
            "the admin key file {} is empty",
            path.display()
        ))),
        Err(e) => Err(bad(format!(
            "no admin key: pass --admin-key, set SETTLE_ADMIN_KEY, or point --data-dir at the \
             server's data directory (cannot read {}: {e})",
            path.display()
        ))),
    }
}

impl LoadArgs {
    /// Checks every option; the first problem found is the message.
    pub fn plan(&self) -> Result<Plan, OptionError> {
        if self.connections == 0 || self.connections > 10_000 {
            return Err(bad("--connections must be from 1 to 10000"));
        }
        let bound = match (self.duration, self.requests) {
            (Some(d), _) if d.is_zero() => return Err(bad("--duration must be above 0")),
            (Some(d), _) if d > Duration::from_secs(24 * 3600) => {
                return Err(bad("--duration must be at most 24h"));
            }
            (Some(d), _) => Bound::Duration(d),
            (None, Some(0)) => return Err(bad("--requests must be at least 1")),
            (None, Some(n)) => Bound::Requests(n),
            (None, None) => Bound::Duration(Duration::from_secs(10)),
        };
        let rate = match self.rate {
            None => None,
            Some(r) if r.is_finite() && r > 0.0 && r <= 100_000_000.0 => Some(r),
            Some(r) => {
                return Err(bad(format!(
                    "--rate must be a number of requests per second above 0 (at most 1e8), not {r}"
                )));
            }
        };
        if self.batch == 0 || self.batch > MAX_BATCH {
            return Err(bad(format!("--batch must be from 1 to {MAX_BATCH}")));
        }
        if !(self.zipf.is_finite() && self.zipf >= 0.0 && self.zipf <= 100.0) {
            return Err(bad(format!(
                "--zipf must be an exponent from 0 (uniform) to 100, not {}",
                self.zipf
            )));
        }
        let mix = Mix::parse(&self.mix)?;
        if self.wallets == 0 || self.wallets > 10_000_000 {
            return Err(bad("--wallets must be from 1 to 10000000"));
        }
        if self.wallets < 2 && mix.weight(OpKind::Transfer) > 0 {
            return Err(bad(
                "--wallets must be at least 2 when the mix has transfers",
            ));
        }
        if self.threads == 0 || self.threads > 256 {
            return Err(bad("--threads must be from 1 to 256"));
        }
        if self.timeout.is_zero() {
            return Err(bad("--timeout must be above 0"));
        }
        if self.warmup > Duration::from_secs(3600) {
            return Err(bad("--warmup must be at most 1h"));
        }
        let fund = check_fund(&self.fund)?;
        let url = parse_base_url(&self.url).map_err(OptionError)?;
        if let Some(chart) = &self.chart {
            check_chart(chart)?;
        }
        let admin_key = admin_key(self)?;
        let seed = self.seed.unwrap_or_else(rand::random);
        // No more connections than requests: a connection without a
        // request would never open, and the report would count it.
        let connections = match bound {
            Bound::Requests(n) => self
                .connections
                .min(usize::try_from(n).unwrap_or(usize::MAX)),
            Bound::Duration(_) => self.connections,
        };
        Ok(Plan {
            url,
            connections,
            bound,
            rate,
            wallets: self.wallets,
            fund,
            mix,
            batch: self.batch,
            zipf: self.zipf,
            seed,
            warmup: self.warmup,
            timeout: self.timeout,
            threads: self.threads,
            json: self.json,
            chart: self.chart.clone(),
            admin_key,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mixes_parse_or_say_why_not() {
        let m = Mix::parse("transfer=70,credit=10,debit=10,reserve=10").unwrap();
        assert_eq!(m.total(), 100);
        assert_eq!(m.weight(OpKind::Reserve), 10);
        assert_eq!(m.to_string(), "transfer=70,credit=10,debit=10,reserve=10");
        assert_eq!(
            Mix::parse(" credit = 1 , debit=0").unwrap().weights,
            vec![(OpKind::Credit, 1)]
        );
        for (text, says) in [
            ("transfer", "NAME=WEIGHT"),
            ("teleport=5", "unknown operation `teleport`"),
            ("transfer=-1", "whole number"),
            ("transfer=1.5", "whole number"),
            ("transfer=0", "no operation"),
            ("", "no operation"),
            ("credit=1,credit=2", "named twice"),
            ("capture=1", "unknown operation"),
        ] {
            let e = Mix::parse(text).unwrap_err();
            assert!(e.0.contains(says), "{text}: {e}");
        }
    }

    #[test]
    fn fund_amounts_are_exact_positive_decimals() {
        assert_eq!(check_fund("1000000.00").unwrap(), "1000000.00");
        assert_eq!(check_fund("5").unwrap(), "5");
        assert_eq!(check_fund("10.500").unwrap(), "10.500");
        assert_eq!(check_fund("1e6").unwrap(), "1000000");
        assert_eq!(check_fund("2.5E2").unwrap(), "250");
        assert_eq!(check_fund("125e-2").unwrap(), "1.25");
        assert_eq!(
            check_fund("999999999999999.99").unwrap(),
            "999999999999999.99"
        );
        for (t, says) in [
            ("0", "positive"),
            ("0.00", "positive"),
            ("-1", "positive"),
            ("", "positive"),
            (".5", "positive"),
            ("5.", "positive"),
            ("+5", "positive"),
            ("1_000", "positive"),
            ("abc", "positive"),
            ("1.234", "2 decimals"),
            ("1e-3", "2 decimals"),
            ("1e15", "too large"),
            ("1000000000000000", "too large"),
        ] {
            let e = check_fund(t).unwrap_err();
            assert!(e.0.contains(says), "{t}: {e}");
        }
    }
}
