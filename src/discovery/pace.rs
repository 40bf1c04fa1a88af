//! How often promfed may ask one API server: exponential backoff with
//! jitter after failures, and a hard ceiling per resource whatever the
//! server does (a watch it ends at once, a 410 after every list, …). Pure
//! rules over `tokio::time::Instant`, so paused time tests them.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

/// The first wait after a failure; it doubles up to `MAX_BACKOFF`.
pub const FIRST_BACKOFF: Duration = Duration::from_secs(1);
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// At most one request per resource of one cluster every `CEILING_STEP`
/// (12 a minute), lists and watches together, after a burst of
/// `CEILING_BURST`: a token bucket, so that a resource that used its burst
/// waits one step, not a whole minute.
pub const CEILING_STEP: Duration = Duration::from_secs(5);
pub const CEILING_BURST: u32 = 3;
/// A `Retry-After` is honoured up to this long.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// Waits that grow after each failure, each drawn between half and all of
/// its step (so a thousand clusters that failed together do not come back
/// together).
#[derive(Debug, Clone)]
pub struct Backoff {
    step: Duration,
    cap: Duration,
    random: u64,
}

impl Backoff {
    /// Steps from `FIRST_BACKOFF` up to `cap` (at most `MAX_BACKOFF`).
    pub fn new(cap: Duration, seed: u64) -> Backoff {
        Backoff {
            step: FIRST_BACKOFF,
            cap: cap.clamp(FIRST_BACKOFF, MAX_BACKOFF),
            // xorshift needs a state that is not zero.
            random: seed | 1,
        }
    }

    /// The wait after one more failure: at least what the server asked.
    pub fn failure(&mut self, retry_after: Option<Duration>) -> Duration {
        let step = self.step;
        self.step = (self.step * 2).min(self.cap);
        let half = step / 2;
        let jitter = half.mul_f64(self.next_fraction());
        let asked = retry_after.unwrap_or_default().min(MAX_RETRY_AFTER);
        (half + jitter).max(asked)
    }

    /// A success: the next failure waits the first step again.
    pub fn reset(&mut self) {
        self.step = FIRST_BACKOFF;
    }

    /// A number in [0, 1) from xorshift64: jitter needs no strong random.
    fn next_fraction(&mut self) -> f64 {
        let mut x = self.random;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.random = x;
        (x >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A seed that differs between clusters and runs.
pub fn seed(name: &str) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    crate::digest::keyed(&name) ^ u64::from(nanos)
}

/// One resource's token bucket, as the moment its tokens were all spent
/// (`None`: full).
#[derive(Debug, Default)]
pub struct Ceiling {
    /// The bucket is full again `CEILING_BURST` steps after this.
    empty_at: Option<Instant>,
}

impl Ceiling {
    /// When the next request may go (`now`, or once a token is back),
    /// taken as granted.
    pub fn reserve(&mut self, now: Instant) -> Instant {
        let full_span = CEILING_STEP * CEILING_BURST;
        // The moment the bucket would be empty if it were full at `now`.
        let floor = now.checked_sub(full_span).unwrap_or(now);
        let empty_at = self.empty_at.map_or(floor, |e| e.max(floor));
        // Each request moves the empty moment one step on; it may go once
        // that moment is not in the future.
        let next = empty_at + CEILING_STEP;
        self.empty_at = Some(next);
        next.max(now)
    }
}

/// One cluster's ceilings, by resource; shared by its list and watch
/// futures (the lock is never held across an await).
#[derive(Debug)]
pub struct Ceilings<K>(Arc<Mutex<BTreeMap<K, Ceiling>>>);

impl<K> Clone for Ceilings<K> {
    fn clone(&self) -> Self {
        Ceilings(self.0.clone())
    }
}

impl<K: Ord> Default for Ceilings<K> {
    fn default() -> Self {
        Ceilings(Arc::new(Mutex::new(BTreeMap::new())))
    }
}

impl<K: Ord> Ceilings<K> {
    /// Waits until a request for `resource` may go, and counts it.
    pub async fn admit(&self, resource: K) {
        let at = {
            let mut all = self.0.lock().unwrap_or_else(|e| e.into_inner());
            all.entry(resource).or_default().reserve(Instant::now())
        };
        tokio::time::sleep_until(at).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_up_to_its_cap_and_starts_again_after_a_success() {
        let mut b = Backoff::new(Duration::from_secs(600), 7);
        let waits: Vec<Duration> = (0..8).map(|_| b.failure(None)).collect();
        let steps = [1, 2, 4, 8, 16, 30, 30, 30];
        for (wait, step) in waits.iter().zip(steps) {
            let step = Duration::from_secs(step);
            assert!(*wait >= step / 2 && *wait <= step, "{wait:?} for {step:?}");
        }
        assert!(waits.windows(2).any(|w| w[0] != w[1]), "jitter: {waits:?}");
        b.reset();
        assert!(b.failure(None) <= FIRST_BACKOFF);
        assert_eq!(
            b.failure(Some(Duration::from_secs(120))),
            Duration::from_secs(120),
            "Retry-After is honoured"
        );
        assert_eq!(
            b.failure(Some(Duration::from_secs(86_400))),
            MAX_RETRY_AFTER
        );
        let mut short = Backoff::new(Duration::from_secs(5), 1);
        for _ in 0..10 {
            assert!(short.failure(None) <= Duration::from_secs(5));
        }
    }

    #[test]
    fn two_clusters_failing_together_come_back_apart() {
        let mut a = Backoff::new(MAX_BACKOFF, seed("a"));
        let mut b = Backoff::new(MAX_BACKOFF, seed("b"));
        let apart = (0..6)
            .filter(|_| a.failure(None) != b.failure(None))
            .count();
        assert!(apart >= 5, "{apart}");
    }

    #[tokio::test(start_paused = true)]
    async fn the_ceiling_holds_whatever_the_pace_asked_for() {
        let ceilings = Ceilings::default();
        let start = Instant::now();
        let mut times = Vec::new();
        // As fast as a server that ends every watch at once could make us.
        for _ in 0..40 {
            ceilings.admit("nodes").await;
            times.push(Instant::now() - start);
        }
        let minute = Duration::from_secs(60);
        for window_start in &times {
            let within = times
                .iter()
                .filter(|t| **t >= *window_start && **t < *window_start + minute)
                .count();
            assert!(
                within <= 12 + CEILING_BURST as usize,
                "{within} requests in a minute"
            );
        }
        // The burst at once, then one a step.
        assert_eq!(times[CEILING_BURST as usize - 1], Duration::ZERO);
        assert_eq!(times[CEILING_BURST as usize], CEILING_STEP);
        assert_eq!(times[39], CEILING_STEP * (40 - CEILING_BURST));
        // Another resource has its own ceiling.
        let before = Instant::now();
        ceilings.admit("endpointslices").await;
        assert_eq!(Instant::now(), before);
    }

    #[tokio::test(start_paused = true)]
    async fn a_quiet_resource_is_never_held_back() {
        let ceilings = Ceilings::default();
        for _ in 0..30 {
            let before = Instant::now();
            ceilings.admit(1).await;
            assert_eq!(Instant::now(), before);
            tokio::time::sleep(CEILING_STEP).await;
        }
    }
}
