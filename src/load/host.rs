//! What the machine running `settle load` did with its CPUs during the
//! measured run, from `/proc/stat` (Linux; elsewhere nothing is reported).
//!
//! Why it is in the report: on a virtual machine the hypervisor may not run a
//! vCPU the moment it has work (`steal` time). On the 2-core machines of this
//! project, a run with 30% steal had a p99 ten times that of the same run
//! with 1% (BENCHMARKS.md), so a latency figure means little without it.
//! When the server runs on the same machine, these are its CPUs too.

/// Cumulative CPU time of all CPUs, in the kernel's ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuTimes {
    /// user + nice + system + irq + softirq.
    pub busy: u64,
    pub idle: u64,
    pub iowait: u64,
    /// Time a vCPU wanted to run and the hypervisor ran something else.
    pub steal: u64,
}

/// The machine's CPU time over an interval, as percentages of all of it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HostShare {
    pub busy: f64,
    pub steal: f64,
    pub iowait: f64,
}

/// The aggregate `cpu` line of `/proc/stat` (`cpu user nice system idle
/// iowait irq softirq steal guest guest_nice`; guest time is already counted
/// in user). None when the line is missing or malformed.
pub fn parse_proc_stat(text: &str) -> Option<CpuTimes> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    let at = |i: usize| fields.get(i).copied().unwrap_or(0);
    if fields.len() < 4 {
        return None;
    }
    Some(CpuTimes {
        busy: at(0)
            .saturating_add(at(1))
            .saturating_add(at(2))
            .saturating_add(at(5))
            .saturating_add(at(6)),
        idle: at(3),
        iowait: at(4),
        steal: at(7),
    })
}

/// This machine's CPU times now, when it has a `/proc/stat`.
pub fn sample() -> Option<CpuTimes> {
    parse_proc_stat(&std::fs::read_to_string("/proc/stat").ok()?)
}

/// The shares of the interval between two samples; None if no time passed
/// (or the counters went backwards).
#[allow(
    clippy::float_arithmetic,
    clippy::cast_precision_loss,
    reason = "percentages for a report, from tick counts far below 2^52"
)]
pub fn share(before: CpuTimes, after: CpuTimes) -> Option<HostShare> {
    let busy = after.busy.checked_sub(before.busy)?;
    let idle = after.idle.checked_sub(before.idle)?;
    let iowait = after.iowait.checked_sub(before.iowait)?;
    let steal = after.steal.checked_sub(before.steal)?;
    let total = busy
        .checked_add(idle)?
        .checked_add(iowait)?
        .checked_add(steal)?;
    if total == 0 {
        return None;
    }
    let pct = |n: u64| (n as f64 * 1000.0 / total as f64).round() / 10.0;
    Some(HostShare {
        busy: pct(busy),
        steal: pct(steal),
        iowait: pct(iowait),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "cpu  8531238 61495 899768 1832064 61599 0 43194 121288 0 0\n\
                        cpu0 4265619 30747 449884 916032 30799 0 21597 60644 0 0\n\
                        intr 123\n";

    #[test]
    fn the_aggregate_line_is_read_with_guest_time_left_out() {
        let t = parse_proc_stat(STAT);
        assert_eq!(
            t,
            Some(CpuTimes {
                busy: 8_531_238 + 61_495 + 899_768 + 43_194,
                idle: 1_832_064,
                iowait: 61_599,
                steal: 121_288,
            })
        );
    }

    #[test]
    fn old_kernels_without_steal_and_garbage_are_handled() {
        let old = parse_proc_stat("cpu 10 0 5 85\n");
        assert_eq!(
            old,
            Some(CpuTimes {
                busy: 15,
                idle: 85,
                iowait: 0,
                steal: 0
            })
        );
        assert_eq!(parse_proc_stat("cpu 1 2\n"), None);
        assert_eq!(parse_proc_stat("cpu 1 x 3 4\n"), None);
        assert_eq!(parse_proc_stat("intr 5\n"), None);
        assert_eq!(parse_proc_stat(""), None);
    }

    #[test]
    fn shares_are_percentages_of_the_interval() {
        let a = CpuTimes {
            busy: 100,
            idle: 100,
            iowait: 0,
            steal: 10,
        };
        let b = CpuTimes {
            busy: 190,
            idle: 150,
            iowait: 10,
            steal: 60,
        };
        // 90 busy + 50 idle + 10 iowait + 50 steal = 200 ticks.
        assert_eq!(
            share(a, b),
            Some(HostShare {
                busy: 45.0,
                steal: 25.0,
                iowait: 5.0
            })
        );
        assert_eq!(share(a, a), None, "no time passed");
        assert_eq!(share(b, a), None, "counters went backwards");
    }
}
