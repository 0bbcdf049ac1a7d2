//! Threads whose work can wait for requests: they run at a low CPU
//! priority, so that on a machine with few cores they take mostly the CPU
//! that serving leaves idle.
//!
//! Why: on 2 cores, a snapshot (replaying the log tail, encoding, hashing)
//! at normal priority takes half the machine for seconds, and the requests
//! that arrive meanwhile queue behind it (BENCHMARKS.md, "Snapshots at a
//! low priority"). At nice 10 the scheduler weighs it 110 against 1,024
//! for each busy thread at nice 0, so it gets under a tenth of a core while
//! requests want the CPU, and all of what they leave. Not nice 19 (a
//! weight of 15): under sustained full load a snapshot would then take
//! minutes, and the log it lets us remove would grow meanwhile.

/// The nice value of a background thread.
const BACKGROUND_NICE: i32 = 10;

/// Lowers the calling thread's CPU priority to nice 10. Best effort: on
/// failure (or off Linux, where a thread has no priority of its own and
/// `setpriority` would lower the whole process) it logs why and the thread
/// runs at normal priority.
pub fn lower_this_threads_priority(what: &str) {
    #[cfg(target_os = "linux")]
    {
        // On Linux the nice value belongs to the thread: `setpriority` on
        // its thread id leaves the rest of the process alone, and the
        // threads it spawns inherit it.
        let tid = rustix::thread::gettid();
        if let Err(e) = rustix::process::setpriority_process(Some(tid), BACKGROUND_NICE) {
            tracing::warn!(thread = what, error = %e, "could not lower the thread's CPU priority; it competes with requests");
        }
    }
    #[cfg(not(target_os = "linux"))]
    tracing::debug!(
        thread = what,
        "thread priorities are per process here: left at normal priority"
    );
}

#[cfg(test)]
mod tests {
    #[test]
    #[cfg(target_os = "linux")]
    fn lowers_only_the_calling_thread() {
        let before = rustix::process::getpriority_process(None).unwrap_or(0);
        let lowered = std::thread::spawn(|| {
            super::lower_this_threads_priority("test");
            rustix::process::getpriority_process(Some(rustix::thread::gettid()))
        })
        .join();
        assert!(
            matches!(lowered, Ok(Ok(super::BACKGROUND_NICE))),
            "{lowered:?}"
        );
        // The process (this thread) keeps its priority.
        assert_eq!(
            rustix::process::getpriority_process(None).ok(),
            Some(before)
        );
    }
}
