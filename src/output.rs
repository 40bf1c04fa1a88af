//! What commands print. `println!` panics when the write fails (a closed
//! pipe, a full disk); these record the failure instead, so that the command
//! ends with exit 1 and a message, never a panic, and never exit 0 with its
//! output lost.

use std::sync::atomic::{AtomicBool, Ordering};

static FAILED: AtomicBool = AtomicBool::new(false);

pub fn failed(result: std::io::Result<()>) {
    if result.is_err() {
        FAILED.store(true, Ordering::Relaxed);
    }
}

/// `1 node`, `3 nodes`.
pub fn counted(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", plural(n, one, many))
}

/// `1 cluster`, `2 clusters`: the word for `n`.
pub fn plural<'a>(n: usize, one: &'a str, many: &'a str) -> &'a str {
    if n == 1 { one } else { many }
}

/// Names discovery left out, a few of them shown: for `promfed check` and
/// the daemon's log alike.
pub fn skipped(names: &[String]) -> String {
    if names.is_empty() {
        return String::new();
    }
    let shown: Vec<&str> = names.iter().take(5).map(String::as_str).collect();
    format!(
        "; {} names left out, not being Kubernetes names: {}{}",
        names.len(),
        shown.join(", "),
        if names.len() > 5 { ", …" } else { "" }
    )
}

/// Flushes standard output; whether every write of this command succeeded.
pub fn all_written() -> bool {
    use std::io::Write;
    failed(std::io::stdout().flush());
    !FAILED.load(Ordering::Relaxed)
}

/// `println!` to standard output, recording a failed write.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        $crate::output::failed(writeln!(std::io::stdout(), $($arg)*));
    }};
}

/// `print!` to standard output, recording a failed write.
macro_rules! say_raw {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        $crate::output::failed(write!(std::io::stdout(), $($arg)*));
    }};
}

/// `eprintln!` without the panic: messages to standard error.
macro_rules! tell {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}
