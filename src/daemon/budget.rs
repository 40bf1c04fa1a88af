//! Prometheus's side of `file_sd`: each distinct `file_sd_configs` block
//! takes one inotify instance of the user Prometheus runs as, and Debian
//! allows 128 per user. Past that, Prometheus 2.42 logs "Error adding file
//! watcher" and that job never follows its targets file again, while its
//! reloads still succeed. Prometheus counts these failures in
//! `prometheus_sd_file_watcher_errors_total`; this reads the counter and
//! says whether the configuration in force lost watchers.

/// Whether the watchers of the configuration in force could all be made.
#[derive(Debug, Default)]
pub struct WatchBudget {
    /// The counter when last sampled.
    last: Option<u64>,
    /// Prometheus was reloaded since the last sample: every provider
    /// started again, so failures before it no longer matter.
    reloaded: bool,
    exhausted: bool,
}

impl WatchBudget {
    pub fn exhausted(&self) -> bool {
        self.exhausted
    }

    /// Prometheus re-read its configuration (all its discovery restarts).
    pub fn reloaded(&mut self) {
        self.reloaded = true;
    }

    /// Takes a reading of `prometheus_sd_file_watcher_errors_total`;
    /// returns whether `exhausted` changed.
    pub fn sample(&mut self, errors: u64) -> bool {
        let before = self.exhausted;
        match self.last {
            // First reading, or Prometheus restarted (the counter went back):
            // any failure since its start counts.
            None => self.exhausted = errors > 0,
            Some(last) if errors < last => self.exhausted = errors > 0,
            Some(last) if errors > last => self.exhausted = true,
            Some(_) if self.reloaded => self.exhausted = false,
            Some(_) => {}
        }
        self.last = Some(errors);
        self.reloaded = false;
        before != self.exhausted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_count_until_a_reload_without_new_ones() {
        let mut b = WatchBudget::default();
        assert!(!b.sample(0) && !b.exhausted());
        // A reload whose watchers could not all be made.
        b.reloaded();
        assert!(b.sample(3) && b.exhausted());
        // Without a reload, the lost watchers stay lost.
        assert!(!b.sample(3) && b.exhausted());
        // A reload that made every watcher.
        b.reloaded();
        assert!(b.sample(3) && !b.exhausted());
    }

    #[test]
    fn a_restarted_prometheus_is_judged_by_its_own_count() {
        let mut b = WatchBudget::default();
        assert!(b.sample(2) && b.exhausted(), "failures since its start");
        assert!(b.sample(0) && !b.exhausted(), "restarted, none failed");
        assert!(b.sample(1) && b.exhausted());
    }
}
