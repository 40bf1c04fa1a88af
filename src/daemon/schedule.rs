//! When the daemon runs a transaction, decided without I/O or a runtime:
//! `Schedule::on(event, now)` returns what to do, and the daemon's async
//! shell does it. Every timing rule of the daemon lives here.
//!
//! - A burst of file events applies once, `debounce` after the last event,
//!   but never later than `max_delay` after the first.
//! - SIGHUP applies at once.
//! - A transaction that may succeed later is retried after 1 s, 2 s, 4 s …
//!   up to `MAX_RETRY`; a transaction that needs no retry ends the backoff.
//! - Any transaction reads every input, so it also settles a pending burst.

use std::time::{Duration, Instant};

/// A failed apply is retried after 1 s, 2 s, 4 s … up to this.
pub const MAX_RETRY: Duration = Duration::from_secs(300);
const FIRST_RETRY: Duration = Duration::from_secs(1);

/// Why a transaction runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Start,
    Files,
    Hangup,
    Retry,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A file an input depends on changed.
    FileChanged,
    /// SIGHUP.
    Hangup,
    /// The time `Schedule::wake` asked for has come.
    Timer,
    /// A transaction ended; `retry` says whether trying again may help.
    Applied { retry: bool },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Run a transaction now.
    Apply(Trigger),
    /// Nothing to do before this time.
    SleepUntil(Instant),
    /// Nothing to do until the next event.
    Ignore,
}

#[derive(Debug, Clone, Copy)]
struct Burst {
    first: Instant,
    due: Instant,
}

#[derive(Debug, Clone, Copy)]
struct Retry {
    at: Instant,
    backoff: Duration,
}

#[derive(Debug)]
pub struct Schedule {
    debounce: Duration,
    max_delay: Duration,
    burst: Option<Burst>,
    retry: Option<Retry>,
}

impl Schedule {
    pub fn new(debounce: Duration, max_delay: Duration) -> Schedule {
        Schedule {
            debounce,
            max_delay,
            burst: None,
            retry: None,
        }
    }

    /// New timings from re-read settings; they apply to the next burst.
    pub fn set_timing(&mut self, debounce: Duration, max_delay: Duration) {
        self.debounce = debounce;
        self.max_delay = max_delay;
    }

    /// The first transaction, when the daemon starts.
    pub fn start(&mut self) -> Action {
        self.apply(Trigger::Start)
    }

    pub fn on(&mut self, event: Event, now: Instant) -> Action {
        match event {
            Event::FileChanged => {
                let first = self.burst.map_or(now, |b| b.first);
                let due = (now + self.debounce).min(first + self.max_delay);
                self.burst = Some(Burst { first, due });
                self.sleep()
            }
            Event::Hangup => self.apply(Trigger::Hangup),
            Event::Timer => {
                if self.burst.is_some_and(|b| b.due <= now) {
                    self.apply(Trigger::Files)
                } else if self.retry.is_some_and(|r| r.at <= now) {
                    self.apply(Trigger::Retry)
                } else {
                    self.sleep()
                }
            }
            Event::Applied { retry } => {
                self.retry = retry.then(|| {
                    let backoff = self
                        .retry
                        .map_or(FIRST_RETRY, |r| (r.backoff * 2).min(MAX_RETRY));
                    Retry {
                        at: now + backoff,
                        backoff,
                    }
                });
                self.sleep()
            }
        }
    }

    /// The backoff before the next retry, if one is planned.
    pub fn retry_in(&self) -> Option<Duration> {
        self.retry.map(|r| r.backoff)
    }

    /// The next time something is due.
    pub fn wake(&self) -> Option<Instant> {
        [self.burst.map(|b| b.due), self.retry.map(|r| r.at)]
            .into_iter()
            .flatten()
            .min()
    }

    fn apply(&mut self, trigger: Trigger) -> Action {
        self.burst = None;
        Action::Apply(trigger)
    }

    fn sleep(&self) -> Action {
        self.wake().map_or(Action::Ignore, Action::SleepUntil)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn schedule() -> (Schedule, Instant) {
        (Schedule::new(250 * MS, 2000 * MS), Instant::now())
    }

    #[test]
    fn a_burst_applies_once_a_debounce_after_its_last_event() {
        let (mut s, t0) = schedule();
        assert_eq!(
            s.on(Event::FileChanged, t0),
            Action::SleepUntil(t0 + 250 * MS)
        );
        assert_eq!(
            s.on(Event::FileChanged, t0 + 100 * MS),
            Action::SleepUntil(t0 + 350 * MS)
        );
        assert_eq!(
            s.on(Event::Timer, t0 + 349 * MS),
            Action::SleepUntil(t0 + 350 * MS)
        );
        assert_eq!(
            s.on(Event::Timer, t0 + 350 * MS),
            Action::Apply(Trigger::Files)
        );
        // The burst is settled: the timer has nothing more to do.
        assert_eq!(s.on(Event::Timer, t0 + 400 * MS), Action::Ignore);
    }

    #[test]
    fn a_long_burst_applies_no_later_than_max_delay_after_its_first_event() {
        let (mut s, t0) = schedule();
        let mut now = t0;
        for _ in 0..30 {
            s.on(Event::FileChanged, now);
            now += 100 * MS; // each event inside the previous debounce
        }
        assert_eq!(s.wake(), Some(t0 + 2000 * MS));
        assert_eq!(
            s.on(Event::Timer, t0 + 2000 * MS),
            Action::Apply(Trigger::Files)
        );
    }

    #[test]
    fn hangup_applies_at_once_and_settles_a_pending_burst() {
        let (mut s, t0) = schedule();
        s.on(Event::FileChanged, t0);
        assert_eq!(s.on(Event::Hangup, t0 + MS), Action::Apply(Trigger::Hangup));
        assert_eq!(s.wake(), None);
        assert_eq!(s.start(), Action::Apply(Trigger::Start));
    }

    #[test]
    fn failures_back_off_doubling_up_to_the_cap_and_success_ends_it() {
        let (mut s, t0) = schedule();
        let mut now = t0;
        let mut waits = Vec::new();
        for _ in 0..12 {
            let Action::SleepUntil(at) = s.on(Event::Applied { retry: true }, now) else {
                panic!("a failed apply plans a retry");
            };
            waits.push((at - now).as_secs());
            assert_eq!(s.on(Event::Timer, at - MS), Action::SleepUntil(at));
            assert_eq!(s.on(Event::Timer, at), Action::Apply(Trigger::Retry));
            now = at;
        }
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
        assert_eq!(s.on(Event::Applied { retry: false }, now), Action::Ignore);
        assert_eq!(s.retry_in(), None);
        // The next failure starts again from one second.
        s.on(Event::Applied { retry: true }, now);
        assert_eq!(s.retry_in(), Some(Duration::from_secs(1)));
    }

    #[test]
    fn a_burst_due_before_a_retry_wakes_first_and_applies_as_files() {
        let (mut s, t0) = schedule();
        s.on(Event::Applied { retry: true }, t0); // retry at t0 + 1 s
        s.on(Event::FileChanged, t0);
        assert_eq!(s.wake(), Some(t0 + 250 * MS));
        assert_eq!(
            s.on(Event::Timer, t0 + 250 * MS),
            Action::Apply(Trigger::Files)
        );
        // The retry stays planned until a transaction's result says otherwise.
        assert_eq!(s.wake(), Some(t0 + 1000 * MS));
    }
}
