//! When to renew a credential, and the loop that does it. The rules are
//! pure functions of the times; the loop only sleeps and asks. Renewal
//! comes at 80 % of the lifetime, at once on a 401 (but never twice within
//! `UNAUTHORIZED_GAP`), and after a failure with a doubling backoff.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::{CredentialError, Issued};

/// Renewal at this share of the lifetime: the rest is room for failures.
pub const RENEW_AT_PERCENT: u32 = 80;
/// Never renew sooner than this after a success: a plugin that gives a
/// one-second token must not run in a loop.
pub const MIN_WAIT: Duration = Duration::from_secs(1);
/// A credential without an expiry is renewed this often (or on a 401).
pub const NO_EXPIRY_REFRESH: Duration = Duration::from_secs(3600);
pub const FIRST_BACKOFF: Duration = Duration::from_secs(2);
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// A 401 renews at once, but not again within this: a server that refuses
/// every new token must not make promfed ask in a loop.
pub const UNAUTHORIZED_GAP: Duration = Duration::from_secs(10);

/// The next renewal after a success with this lifetime.
pub fn after_success(now: Instant, lifetime: Option<Duration>) -> Instant {
    let wait = match lifetime {
        None => NO_EXPIRY_REFRESH,
        Some(l) => (l * RENEW_AT_PERCENT / 100).max(MIN_WAIT),
    };
    now + wait
}

/// The next attempt after `failures` failures in a row (1 or more).
pub fn after_failure(now: Instant, failures: u32) -> Instant {
    let doubled = FIRST_BACKOFF.saturating_mul(1 << failures.saturating_sub(1).min(16));
    now + doubled.min(MAX_BACKOFF)
}

/// The next attempt once a request got 401: at once, unless an attempt
/// was made within `UNAUTHORIZED_GAP`; never later than `planned`.
pub fn on_unauthorized(now: Instant, last_attempt: Option<Instant>, planned: Instant) -> Instant {
    let soonest = last_attempt.map_or(now, |t| (t + UNAUTHORIZED_GAP).max(now));
    soonest.min(planned)
}

/// What the loop tells after each attempt.
#[derive(Debug)]
pub struct Attempt {
    /// The new credential's expiry, or why none came.
    pub result: Result<Option<jiff::Timestamp>, String>,
    /// The kind of credential changed (token ↔ certificate).
    pub kind_changed: bool,
    /// When the next attempt is planned, from now.
    pub next_in: Duration,
}

/// Obtains and stores credentials: the daemon's is the plugin or the API
/// server and the state folder; tests' a counter.
pub trait Issuer: Send {
    fn issue(&mut self) -> impl Future<Output = Result<Issued, CredentialError>> + Send;
    /// Stores a new credential; `true` when its kind changed.
    fn store(&mut self, issued: &Issued) -> Result<bool, CredentialError>;
}

/// Renews for ever: first at `first` (now when the kept credential is
/// missing or due), then by the rules above. `unauthorized` is notified on
/// every 401; `tell` hears every attempt.
pub async fn keep_renewed<I: Issuer>(
    mut issuer: I,
    first: Instant,
    unauthorized: Arc<Notify>,
    mut tell: impl FnMut(Attempt) + Send,
) {
    let mut planned = first;
    let mut last_attempt: Option<Instant> = None;
    let mut failures = 0u32;
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(planned) => {}
            () = unauthorized.notified() => {
                planned = on_unauthorized(Instant::now(), last_attempt, planned);
                continue;
            }
        }
        let started = Instant::now();
        last_attempt = Some(started);
        let outcome = issuer
            .issue()
            .await
            .and_then(|issued| Ok((issuer.store(&issued)?, issued.expires)));
        let now = Instant::now();
        let (result, kind_changed) = match outcome {
            Ok((changed, expires)) => {
                failures = 0;
                planned = after_success(now, expires.map(lifetime));
                (Ok(expires), changed)
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                planned = after_failure(now, failures);
                (Err(e.to_string()), false)
            }
        };
        tell(Attempt {
            result,
            kind_changed,
            next_in: planned.saturating_duration_since(now),
        });
    }
}

/// From now to `expires`, by the wall clock.
pub fn lifetime(expires: jiff::Timestamp) -> Duration {
    let seconds = expires.as_millisecond() - jiff::Timestamp::now().as_millisecond();
    Duration::from_millis(u64::try_from(seconds).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credentials::Secret;
    use std::sync::Mutex;

    /// Issues tokens of `lifetime` (or fails while `failing`), and records
    /// when it was asked, in seconds since the start.
    struct Counter {
        start: Instant,
        lifetime: Duration,
        asked: Arc<Mutex<Vec<u64>>>,
        failing: Arc<Mutex<bool>>,
    }

    impl Issuer for Counter {
        async fn issue(&mut self) -> Result<Issued, CredentialError> {
            self.asked
                .lock()
                .unwrap()
                .push(self.start.elapsed().as_secs());
            if *self.failing.lock().unwrap() {
                return Err(CredentialError::Answer {
                    account: "a".into(),
                    detail: "refused".into(),
                });
            }
            Ok(Issued {
                secret: Secret::Token("t".into()),
                expires: Some(jiff::Timestamp::now() + self.lifetime),
            })
        }
        fn store(&mut self, _: &Issued) -> Result<bool, CredentialError> {
            Ok(false)
        }
    }

    struct Run {
        asked: Arc<Mutex<Vec<u64>>>,
        failing: Arc<Mutex<bool>>,
        unauthorized: Arc<Notify>,
        _task: tokio::task::JoinHandle<()>,
    }

    fn start(lifetime: Duration) -> Run {
        let asked = Arc::new(Mutex::new(Vec::new()));
        let failing = Arc::new(Mutex::new(false));
        let unauthorized = Arc::new(Notify::new());
        let issuer = Counter {
            start: Instant::now(),
            lifetime,
            asked: asked.clone(),
            failing: failing.clone(),
        };
        let task = tokio::spawn(keep_renewed(
            issuer,
            Instant::now(),
            unauthorized.clone(),
            |_| {},
        ));
        Run {
            asked,
            failing,
            unauthorized,
            _task: task,
        }
    }

    async fn at(seconds: u64, from: Instant) {
        tokio::time::sleep_until(from + Duration::from_secs(seconds) + Duration::from_millis(1))
            .await;
    }

    #[tokio::test(start_paused = true)]
    async fn renews_at_80_percent_of_the_lifetime() {
        let t0 = Instant::now();
        let run = start(Duration::from_secs(100));
        at(250, t0).await;
        // 100 s tokens, by the wall clock a few ms less: at 0, 80, 160, 240.
        let asked = run.asked.lock().unwrap().clone();
        assert_eq!(asked.len(), 4, "{asked:?}");
        for (got, want) in asked.iter().zip([0u64, 80, 160, 240]) {
            assert!(got.abs_diff(want) <= 1, "{asked:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn after_a_failure_backs_off_doubling_then_recovers() {
        let t0 = Instant::now();
        let run = start(Duration::from_secs(1000));
        *run.failing.lock().unwrap() = true;
        at(31, t0).await;
        // 0, then 2, 4, 8, 16 s later: 0, 2, 6, 14, 30.
        assert_eq!(*run.asked.lock().unwrap(), [0, 2, 6, 14, 30]);
        *run.failing.lock().unwrap() = false;
        at(63, t0).await;
        // 30 + 32: a success, then nothing until 80 % of 1000 s.
        assert_eq!(*run.asked.lock().unwrap(), [0, 2, 6, 14, 30, 62]);
        at(800, t0).await;
        assert_eq!(run.asked.lock().unwrap().len(), 6);
    }

    #[tokio::test(start_paused = true)]
    async fn a_401_renews_at_once_but_not_twice_within_the_gap() {
        let t0 = Instant::now();
        let run = start(Duration::from_secs(1000));
        at(20, t0).await;
        run.unauthorized.notify_one();
        at(21, t0).await;
        assert_eq!(*run.asked.lock().unwrap(), [0, 20]);
        // A 401 storm: one more renewal, 10 s after the last, not one each.
        for s in 22..29 {
            run.unauthorized.notify_one();
            at(s, t0).await;
        }
        at(40, t0).await;
        assert_eq!(*run.asked.lock().unwrap(), [0, 20, 30]);
    }

    #[test]
    fn the_rules_alone() {
        let now = Instant::now();
        assert_eq!(
            after_success(now, Some(Duration::from_secs(900))),
            now + Duration::from_secs(720)
        );
        assert_eq!(after_success(now, Some(Duration::ZERO)), now + MIN_WAIT);
        assert_eq!(after_success(now, None), now + NO_EXPIRY_REFRESH);
        assert_eq!(after_failure(now, 1), now + FIRST_BACKOFF);
        assert_eq!(after_failure(now, 40), now + MAX_BACKOFF);
        let planned = now + Duration::from_secs(5);
        assert_eq!(on_unauthorized(now, None, planned), now);
        assert_eq!(on_unauthorized(now, Some(now), planned), planned);
    }
}
