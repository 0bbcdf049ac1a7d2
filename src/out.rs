//! Standard output for the offline commands and reports.
//!
//! `println!` panics when standard output is a closed pipe (`settle wal
//! verify | head -1`): Rust ignores SIGPIPE, so the write fails with
//! `BrokenPipe`, and restoring the signal's default would take `unsafe`,
//! which the workspace forbids. A reader that stopped reading wants no
//! more output, as with any Unix tool: the process ends quietly instead,
//! with the status a shell shows for SIGPIPE (141).

use std::fmt;
use std::io::{ErrorKind, Write};

/// Writes one line to standard output, like `println!`.
macro_rules! say {
    () => {
        $crate::out::line(format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::out::line(format_args!($($arg)*))
    };
}

/// The status a shell reports for a process ended by SIGPIPE.
const CLOSED_PIPE: i32 = 128 + 13;

pub fn line(args: fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    let written = out.write_fmt(args).and_then(|()| out.write_all(b"\n"));
    match written {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::BrokenPipe => std::process::exit(CLOSED_PIPE),
        // Any other failure to write (a full disk behind a redirect) is
        // said where it can still be read, and the command goes on.
        Err(e) => eprintln!("settle: cannot write to standard output: {e}"),
    }
}
