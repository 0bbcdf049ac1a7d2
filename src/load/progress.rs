//! Progress while the run goes on: a live bar with the current throughput
//! when standard error is a terminal (indicatif), else a line every 5
//! seconds.

use super::args::Bound;
use super::stats::Live;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::VecDeque;
use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The running display; `finish` stops it.
#[derive(Debug)]
pub struct Progress {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Progress {
    pub async fn finish(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

/// Operations per second over the last second or so.
#[derive(Debug, Default)]
struct Rate {
    samples: VecDeque<(Instant, u64)>,
}

impl Rate {
    fn push(&mut self, at: Instant, ops: u64) -> u64 {
        self.samples.push_back((at, ops));
        while self.samples.len() > 2
            && self
                .samples
                .get(1)
                .is_some_and(|(t, _)| at.duration_since(*t) >= Duration::from_secs(1))
        {
            self.samples.pop_front();
        }
        let Some((t0, n0)) = self.samples.front().copied() else {
            return 0;
        };
        let dt = at.duration_since(t0).as_micros();
        if dt == 0 {
            return 0;
        }
        u64::try_from(u128::from(ops.saturating_sub(n0)) * 1_000_000 / dt).unwrap_or(u64::MAX)
    }
}

/// `1234567` as `1,234,567`.
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

pub fn start(live: Arc<Live>, bound: Bound, measure_start: Instant) -> Progress {
    let (stop, mut stopped) = oneshot::channel::<()>();
    let terminal = std::io::stderr().is_terminal();
    let task = tokio::spawn(async move {
        let bar = terminal.then(|| {
            let (len, template) = match bound {
                Bound::Duration(d) => (
                    u64::try_from(d.as_millis()).unwrap_or(u64::MAX),
                    "{spinner} {elapsed:>4} [{wide_bar}] {msg}",
                ),
                // Short: on 80 columns the bar still gets a third of the
                // line (it collapsed to `[]` with the longer text).
                Bound::Requests(n) => (n, "{spinner} {elapsed:>4} [{wide_bar}] {pos}/{len} {msg}"),
            };
            let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
            if let Ok(style) = ProgressStyle::with_template(template) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar
        });
        let tick = if terminal {
            Duration::from_millis(200)
        } else {
            Duration::from_secs(5)
        };
        // The first tick is a period from now (a line at 0 s says nothing).
        let mut interval = tokio::time::interval_at(tokio::time::Instant::now() + tick, tick);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Live counts start at zero when the measured run starts: that is the
        // first sample, so the first line (5 s in, without a terminal) has a
        // rate instead of a lone sample's 0.
        let mut rate = Rate::default();
        let mut started = false;
        loop {
            tokio::select! {
                _ = &mut stopped => break,
                _ = interval.tick() => {}
            }
            let now = Instant::now();
            let ops = live.ops.load(Ordering::Relaxed);
            let requests = live.requests.load(Ordering::Relaxed);
            let errors = live.errors.load(Ordering::Relaxed);
            let transport = live.transport.load(Ordering::Relaxed);
            let warming = now < measure_start;
            if !warming && !started {
                started = true;
                rate.push(measure_start, 0);
            }
            let per_sec = if warming { 0 } else { rate.push(now, ops) };
            let msg = if warming {
                "warming up".to_owned()
            } else {
                // The bar of a --requests run already shows the count.
                let count = match (&bar, bound) {
                    (Some(_), Bound::Requests(_)) => String::new(),
                    _ => format!("{} ops, ", thousands(ops)),
                };
                format!(
                    "{} ops/s, {count}{} errors, {} unanswered",
                    thousands(per_sec),
                    thousands(errors),
                    thousands(transport)
                )
            };
            match &bar {
                Some(bar) => {
                    let pos = match bound {
                        Bound::Duration(_) => {
                            u64::try_from(now.saturating_duration_since(measure_start).as_millis())
                                .unwrap_or(u64::MAX)
                        }
                        Bound::Requests(_) => requests,
                    };
                    bar.set_position(pos);
                    bar.set_message(msg);
                }
                None if !warming => {
                    let secs = now.saturating_duration_since(measure_start).as_secs();
                    eprintln!("settle load: {secs:>4}s {msg}");
                }
                None => {}
            }
        }
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
    });
    Progress { stop, task }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_rate_is_over_the_time_since_the_start() {
        let start = Instant::now();
        let mut rate = Rate::default();
        assert_eq!(rate.push(start, 0), 0);
        assert_eq!(rate.push(start + Duration::from_secs(5), 50_000), 10_000);
        // Then over the last second or so: 40,000 more in the next second.
        assert_eq!(rate.push(start + Duration::from_secs(6), 90_000), 40_000);
    }

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }

    #[test]
    fn rate_is_per_second() {
        let mut r = Rate::default();
        let t = Instant::now();
        assert_eq!(r.push(t, 0), 0);
        assert_eq!(r.push(t + Duration::from_millis(500), 500), 1_000);
        assert_eq!(r.push(t + Duration::from_secs(1), 1_000), 1_000);
    }
}
