//! How fresh one cluster's discovery is: when it was last listed, and when
//! each watch last heard an event or a bookmark. The discovery task writes
//! these as events arrive; the daemon reads them when it publishes. Atomics,
//! so an event takes no lock, and a few words per watch: a thousand
//! clusters hold them.

use std::sync::atomic::{AtomicI64, Ordering};

use tokio::time::Instant;

use super::which;
pub use super::which::Which;
use crate::config::cluster::Cluster;

/// "Not yet": no list, or a watch never opened.
const NEVER: i64 = 0;

/// A wall-clock step larger than this (the host's clock set, a suspend)
/// moves the clock's anchor at the next list.
const STEP: i64 = 2;

#[derive(Debug)]
pub struct Health {
    /// The wall clock's seconds at `base`: times are the wall clock at the
    /// last anchoring plus tokio's monotonic time since (paused in tests).
    anchor: AtomicI64,
    base: Instant,
    listed: AtomicI64,
    watches: Box<[Watch]>,
}

#[derive(Debug)]
struct Watch {
    which: Which,
    resource: Box<str>,
    heard: AtomicI64,
}

impl Health {
    /// Nothing heard yet, for the watches `cluster` asks for.
    pub fn of(cluster: &Cluster) -> Health {
        let watches = which::all(cluster)
            .into_iter()
            .map(|which| Watch {
                which,
                resource: which.label(cluster).into_boxed_str(),
                heard: AtomicI64::new(NEVER),
            })
            .collect();
        Health {
            anchor: AtomicI64::new(jiff::Timestamp::now().as_second()),
            base: Instant::now(),
            listed: AtomicI64::new(NEVER),
            watches,
        }
    }

    /// Now, in seconds since the epoch.
    pub fn now(&self) -> i64 {
        let elapsed = i64::try_from(self.base.elapsed().as_secs()).unwrap_or(i64::MAX / 2);
        self.anchor.load(Ordering::Relaxed).saturating_add(elapsed)
    }

    /// The cluster was listed whole. Follows a step of the wall clock, so
    /// that ages shown against it stay true.
    pub fn listed(&self) {
        let wall = jiff::Timestamp::now().as_second();
        if (wall - self.now()).abs() > STEP {
            let elapsed = i64::try_from(self.base.elapsed().as_secs()).unwrap_or(0);
            self.anchor.store(wall - elapsed, Ordering::Relaxed);
        }
        self.listed.store(self.now(), Ordering::Relaxed);
    }

    /// The watch is open: its first opening starts its clock; opening it
    /// again does not, or a watch that stays silent until it is dropped
    /// and reopened would never look silent.
    pub fn opened(&self, which: Which) {
        if let Some(w) = self.watch(which) {
            let _ =
                w.heard
                    .compare_exchange(NEVER, self.now(), Ordering::Relaxed, Ordering::Relaxed);
        }
    }

    /// The watch brought an event or a bookmark.
    pub fn heard(&self, which: Which) {
        if let Some(w) = self.watch(which) {
            w.heard.store(self.now(), Ordering::Relaxed);
        }
    }

    /// The cluster is listed instead of watched (its identity may not
    /// watch, or its server has no EndpointSlices): no watch to age.
    pub fn unwatched(&self) {
        for w in &self.watches {
            w.heard.store(NEVER, Ordering::Relaxed);
        }
    }

    /// When the cluster was last listed whole.
    pub fn last_list(&self) -> Option<i64> {
        Some(self.listed.load(Ordering::Relaxed)).filter(|&t| t != NEVER)
    }

    /// Each watch opened so far, and when it last heard (its opening,
    /// before its first event).
    pub fn last_events(&self) -> impl Iterator<Item = (&str, i64)> {
        self.watches.iter().filter_map(|w| {
            let at = w.heard.load(Ordering::Relaxed);
            (at != NEVER).then_some((&*w.resource, at))
        })
    }

    fn watch(&self, which: Which) -> Option<&Watch> {
        self.watches.iter().find(|w| w.which == which)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::diagnostic::SourceText;
    use std::time::Duration;

    fn cluster(extra: &str) -> Cluster {
        let text = format!(
            "api_server = \"https://10.0.0.1:6443\"\ntoken_file = \"/t\"\nca_file = \"/ca\"\n{extra}"
        );
        Cluster::parse(&SourceText::new("/etc/promfed.d/c.toml", text), "c")
            .map(|p| p.cluster)
            .map_err(|_| "invalid")
            .unwrap()
    }

    #[test]
    fn each_watch_the_definition_asks_for_has_a_name() {
        let c = cluster("[pods]\nenabled = true\nnamespaces = [\"apps\", \"web\"]\n");
        let names: Vec<String> = which::all(&c).into_iter().map(|w| w.label(&c)).collect();
        assert_eq!(names, ["nodes", "endpointslices", "pods/apps", "pods/web"]);
        let c = cluster("[kubelet]\nenabled = false\n[cadvisor]\nenabled = false\n");
        let names: Vec<String> = which::all(&c).into_iter().map(|w| w.label(&c)).collect();
        assert_eq!(names, ["endpointslices"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_watch_ages_from_its_first_opening_and_each_event_renews_it() {
        let health = Health::of(&cluster(""));
        let start = health.now();
        assert_eq!(health.last_events().count(), 0, "nothing opened yet");
        assert_eq!(health.last_list(), None);
        health.opened(Which::Nodes);
        health.opened(Which::Slices);
        tokio::time::advance(Duration::from_secs(90)).await;
        health.heard(Which::Slices);
        // Reopened after a silence: its clock goes on.
        health.opened(Which::Nodes);
        let times: Vec<(&str, i64)> = health.last_events().collect();
        assert_eq!(
            times,
            [("nodes", start), ("endpointslices", start + 90)],
            "{times:?}"
        );
        health.unwatched();
        assert_eq!(health.last_events().count(), 0);
    }
}
