//! When the daemon runs a transaction, decided without I/O or a runtime:
//! `Schedule::on(event, now)` returns what to do, and the daemon's async
//! shell does it. Every timing rule of the daemon lives here.
//!
//! - A completed change (a file closed after writing, renamed into place,
//!   removed) applies at once: the kernel says the file is whole, so there
//!   is nothing to wait for.
//! - While a file is still being written, nothing applies until it is
//!   closed, or `max_delay` after the first event at the latest.
//! - Changes that arrive within `debounce` of the end of a transaction
//!   (a burst, including what arrived while it ran) are coalesced into one
//!   more transaction, `debounce` after the last of them and never later
//!   than `max_delay` after the first. A burst of any size costs two.
//! - A new token for Prometheus (a new file to name) applies within
//!   `renewed_within` of it, with whatever else comes meanwhile: the old
//!   token is still valid, and renewals of many clusters cost one reload,
//!   not one each.
//! - SIGHUP applies at once.
//! - A transaction that may succeed later is retried after 1 s, 2 s, 4 s …
//!   up to `MAX_RETRY`; a transaction that needs no retry ends the backoff.
//! - Any transaction reads every input, so it also settles a pending burst.

use std::time::{Duration, Instant};

/// A failed apply is retried after 1 s, 2 s, 4 s … up to this.
pub const MAX_RETRY: Duration = Duration::from_secs(300);
const FIRST_RETRY: Duration = Duration::from_secs(1);
/// A new token waits at most this for company (`renewed_within`).
pub const TOKEN_BATCH: Duration = Duration::from_secs(30);

/// How long a new token of `lifetime` may wait for its transaction: a
/// tenth of its lifetime (renewal comes at 80 %, so half of what is left
/// of the old token's), at most `TOKEN_BATCH`.
pub fn renewed_within(lifetime: Option<Duration>) -> Duration {
    lifetime.map_or(TOKEN_BATCH, |l| (l / 10).min(TOKEN_BATCH))
}

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
    /// A change to an input is complete, and no other input is still being
    /// written.
    Written,
    /// An input is being written: opened, created or modified, not yet
    /// closed.
    Writing,
    /// A new token to give Prometheus, due within this.
    Renewed { within: Duration },
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
    /// False while the burst only waits for files being written that began
    /// in a quiet time: their close applies at once.
    coalescing: bool,
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
    /// Until then a completed change joins a burst instead of applying at
    /// once: `debounce` after the end of the last transaction.
    busy_until: Option<Instant>,
    retry: Option<Retry>,
    /// The latest time for the new tokens waiting (`Event::Renewed`).
    token_due: Option<Instant>,
}

impl Schedule {
    pub fn new(debounce: Duration, max_delay: Duration) -> Schedule {
        Schedule {
            debounce,
            max_delay,
            burst: None,
            busy_until: None,
            retry: None,
            token_due: None,
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
            Event::Written => {
                let coalescing = self.busy(now) || self.burst.is_some_and(|b| b.coalescing);
                if !coalescing {
                    return self.apply(Trigger::Files);
                }
                let first = self.burst.map_or(now, |b| b.first);
                self.burst = Some(Burst {
                    first,
                    due: (now + self.debounce).min(first + self.max_delay),
                    coalescing,
                });
                self.sleep()
            }
            Event::Writing => {
                let coalescing = self.busy(now) || self.burst.is_some_and(|b| b.coalescing);
                let first = self.burst.map_or(now, |b| b.first);
                self.burst = Some(Burst {
                    first,
                    due: first + self.max_delay,
                    coalescing,
                });
                self.sleep()
            }
            Event::Renewed { within } => {
                let due = now + within;
                self.token_due = Some(self.token_due.map_or(due, |t| t.min(due)));
                self.sleep()
            }
            Event::Hangup => self.apply(Trigger::Hangup),
            Event::Timer => {
                let token_due = self.token_due.is_some_and(|t| t <= now);
                if token_due || self.burst.is_some_and(|b| b.due <= now) {
                    self.apply(Trigger::Files)
                } else if self.retry.is_some_and(|r| r.at <= now) {
                    self.apply(Trigger::Retry)
                } else {
                    self.sleep()
                }
            }
            Event::Applied { retry } => {
                self.busy_until = Some(now + self.debounce);
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
        [
            self.burst.map(|b| b.due),
            self.token_due,
            self.retry.map(|r| r.at),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn apply(&mut self, trigger: Trigger) -> Action {
        self.burst = None;
        self.token_due = None;
        Action::Apply(trigger)
    }

    /// Within `debounce` of the end of the last transaction.
    fn busy(&self, now: Instant) -> bool {
        self.busy_until.is_some_and(|t| now < t)
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

    /// Runs `events` (time offset in ms, event) and returns the offsets at
    /// which a transaction ran, each taking `work` ms; timers fire when due.
    fn transactions(s: &mut Schedule, t0: Instant, events: &[(u64, Event)], work: u64) -> Vec<u64> {
        let mut ran = Vec::new();
        let mut queue: Vec<(u64, Event)> = events.to_vec();
        let mut now = 0;
        let mut busy_until = 0;
        loop {
            let next_event = queue.first().map(|(at, _)| (*at).max(busy_until));
            let next_timer = s
                .wake()
                .map(|w| (w - t0).as_millis() as u64)
                .map(|w| w.max(busy_until));
            let (at, event) = match (next_event, next_timer) {
                (None, None) => return ran,
                (Some(e), Some(t)) if t < e => (t, Event::Timer),
                (None, Some(t)) => (t, Event::Timer),
                (Some(e), _) => (e, queue.remove(0).1),
            };
            now = now.max(at);
            if let Action::Apply(_) = s.on(event, t0 + Duration::from_millis(now)) {
                ran.push(now);
                now += work; // events meanwhile wait in the queue
                busy_until = now;
                s.on(
                    Event::Applied { retry: false },
                    t0 + Duration::from_millis(now),
                );
            }
        }
    }

    #[test]
    fn a_completed_change_applies_at_once() {
        let (mut s, t0) = schedule();
        assert_eq!(s.on(Event::Written, t0), Action::Apply(Trigger::Files));
        assert_eq!(s.wake(), None);
        // Long after the transaction, the next change is at once again.
        s.on(Event::Applied { retry: false }, t0 + 30 * MS);
        assert_eq!(
            s.on(Event::Written, t0 + 400 * MS),
            Action::Apply(Trigger::Files)
        );
    }

    #[test]
    fn new_tokens_wait_for_company_but_never_past_the_first_ones_time() {
        let (mut s, t0) = schedule();
        let within = 30_000 * MS;
        // Three clusters renew over 20 s: one transaction, 30 s after the first.
        let renewed = Event::Renewed { within };
        let events = [(0, renewed), (5_000, renewed), (20_000, renewed)];
        assert_eq!(transactions(&mut s, t0, &events, 100), [30_000]);
        // A file change meanwhile applies at once and takes the tokens along.
        let (mut s, t0) = schedule();
        let events = [(0, renewed), (1_000, Event::Written)];
        assert_eq!(transactions(&mut s, t0, &events, 100), [1_000]);
        // A file being written meanwhile waits for its close, as ever.
        let (mut s, t0) = schedule();
        let events = [
            (0, renewed),
            (20_000, Event::Writing),
            (20_500, Event::Written),
        ];
        assert_eq!(transactions(&mut s, t0, &events, 100), [20_500]);
    }

    #[test]
    fn a_token_waits_a_tenth_of_its_lifetime_at_most_30_s() {
        let minute = Duration::from_secs(60);
        assert_eq!(renewed_within(Some(15 * minute)), TOKEN_BATCH);
        assert_eq!(renewed_within(Some(Duration::from_secs(4))), 400 * MS);
        assert_eq!(renewed_within(None), TOKEN_BATCH);
        assert_eq!(renewed_within(Some(Duration::ZERO)), Duration::ZERO);
    }

    #[test]
    fn a_file_being_written_waits_for_its_close() {
        let (mut s, t0) = schedule();
        assert_eq!(s.on(Event::Writing, t0), Action::SleepUntil(t0 + 2000 * MS));
        assert_eq!(
            s.on(Event::Writing, t0 + 100 * MS),
            Action::SleepUntil(t0 + 2000 * MS)
        );
        assert_eq!(
            s.on(Event::Written, t0 + 150 * MS),
            Action::Apply(Trigger::Files)
        );
    }

    #[test]
    fn a_file_never_closed_applies_at_max_delay() {
        let (mut s, t0) = schedule();
        s.on(Event::Writing, t0);
        assert_eq!(
            s.on(Event::Timer, t0 + 1999 * MS),
            Action::SleepUntil(t0 + 2000 * MS)
        );
        assert_eq!(
            s.on(Event::Timer, t0 + 2000 * MS),
            Action::Apply(Trigger::Files)
        );
        assert_eq!(s.on(Event::Timer, t0 + 2100 * MS), Action::Ignore);
    }

    #[test]
    fn a_burst_of_a_hundred_files_costs_two_transactions() {
        for (spread_ms, work_ms) in [(0, 40), (10, 40), (1000, 40), (1000, 3000), (100, 0)] {
            let (mut s, t0) = schedule();
            let events: Vec<(u64, Event)> = (0..100)
                .flat_map(|i| {
                    let at = i * spread_ms / 100;
                    [(at, Event::Writing), (at, Event::Written)]
                })
                .collect();
            let ran = transactions(&mut s, t0, &events, work_ms);
            assert_eq!(
                ran.len(),
                2,
                "spread {spread_ms} ms, work {work_ms} ms: {ran:?}"
            );
            assert_eq!(ran[0], 0, "the first file applies at once");
        }
    }

    #[test]
    fn a_steady_stream_applies_at_least_every_max_delay() {
        let (mut s, t0) = schedule();
        let events: Vec<(u64, Event)> = (0..60).map(|i| (i * 100, Event::Written)).collect();
        let ran = transactions(&mut s, t0, &events, 10);
        for (at, _) in &events {
            let applied = ran.iter().find(|r| *r >= at).expect("every change applies");
            assert!(applied - at <= 2000, "{at} waits past max_delay: {ran:?}");
        }
        assert!(ran.len() <= 5, "a stream is still coalesced: {ran:?}");
        assert_eq!(
            *ran.last().unwrap(),
            5900 + 250,
            "the last change is applied"
        );
    }

    #[test]
    fn hangup_applies_at_once_and_settles_a_pending_burst() {
        let (mut s, t0) = schedule();
        s.on(Event::Writing, t0);
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
        s.on(Event::Written, t0); // just after a transaction: coalesced
        assert_eq!(s.wake(), Some(t0 + 250 * MS));
        assert_eq!(
            s.on(Event::Timer, t0 + 250 * MS),
            Action::Apply(Trigger::Files)
        );
        // The retry stays planned until a transaction's result says otherwise.
        assert_eq!(s.wake(), Some(t0 + 1000 * MS));
    }
}
