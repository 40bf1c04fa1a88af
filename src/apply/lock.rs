//! One transaction at a time, across processes: `promfed apply` beside the
//! daemon, or two applies at once, would otherwise interleave their installs
//! and leave a configuration that no input gives. An advisory lock (flock) on
//! `state_dir/lock`, which holds its holder's pid for messages; the kernel
//! releases it when the holder dies, so a killed run never blocks the next.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::Duration;

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use tokio::time::{Instant, sleep};

use crate::fsutil;

/// How long a transaction waits for another one to end.
pub const WAIT: Duration = Duration::from_secs(60);

/// Held for the whole transaction; dropping it releases the lock.
pub struct TransactionLock {
    _lock: Flock<File>,
}

/// Takes the lock, waiting up to `wait` for its holder.
pub async fn acquire(state_dir: &Path, wait: Duration) -> Result<TransactionLock, String> {
    let path = state_dir.join("lock");
    let open = || {
        fsutil::create_dir(state_dir, 0o755)?;
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .open(&path)
    };
    let deadline = Instant::now() + wait;
    let mut told = false;
    loop {
        let file = open().map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(mut lock) => {
                let pid = format!("{}\n", std::process::id());
                let _ = lock.set_len(0);
                let _ = lock.rewind();
                let _ = lock.write_all(pid.as_bytes());
                return Ok(TransactionLock { _lock: lock });
            }
            Err((mut file, Errno::EWOULDBLOCK)) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = match holder.trim() {
                    "" => "another process".to_string(),
                    pid => format!("process {pid}"),
                };
                if Instant::now() >= deadline {
                    return Err(format!(
                        "another promfed transaction ({holder}) holds {}; gave up after {wait:?}",
                        path.display()
                    ));
                }
                if !told {
                    tracing::warn!(
                        stage = "lock",
                        "waiting for another promfed transaction ({holder}) to end"
                    );
                    told = true;
                }
                sleep(Duration::from_millis(50)).await;
            }
            Err((_, e)) => return Err(format!("cannot lock {}: {e}", path.display())),
        }
    }
}
