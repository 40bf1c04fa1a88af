//! The host's inotify limit, which bounds how many `file_sd` jobs Prometheus
//! can follow: the daemon reports it in its status, `promfed doctor` checks
//! it. Its own module so that neither of them depends on the other.

/// `fs.inotify.max_user_instances`, when readable.
pub fn max_user_instances() -> Option<u64> {
    std::fs::read_to_string("/proc/sys/fs/inotify/max_user_instances")
        .ok()?
        .trim()
        .parse()
        .ok()
}
