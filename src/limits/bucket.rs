//! Token buckets (pure: the clock is an argument). A bucket holds up to `burst` tokens and
//! gains `per_sec` tokens a second; each event takes one, and an event finding less than one
//! token is refused with the time until there will be one.
//!
//! [`TokenBucket`] is one client's bucket (the Socket.IO layer keeps one per connection for
//! `EVENT_RATE`/`EVENT_BURST`); [`KeyedLimiter`] keeps one per key (user or address) for
//! `PUT_RATE`/`PUT_BURST`, forgetting buckets that have filled up again, so its memory
//! follows the clients active in the last `burst / per_sec` seconds.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A rate: `per_sec` tokens a second, at most `burst` saved up.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    per_sec: f64,
    burst: f64,
}

impl Rate {
    /// `None` (no limit) when `per_sec` is 0; a finite positive rate otherwise. A burst
    /// below 1 is taken as 1, so the rate can always be reached.
    pub fn new(per_sec: f64, burst: u32) -> Option<Rate> {
        (per_sec.is_finite() && per_sec > 0.0).then(|| Rate {
            per_sec,
            burst: f64::from(burst.max(1)),
        })
    }

    #[cfg(test)]
    pub fn burst(&self) -> f64 {
        self.burst
    }
}

/// One bucket. Starts full.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: Rate,
    tokens: f64,
    updated: Instant,
}

impl TokenBucket {
    pub fn new(rate: Rate, now: Instant) -> Self {
        TokenBucket {
            rate,
            tokens: rate.burst,
            updated: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        // A `now` before the last update (callers racing to the lock) adds nothing.
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate.per_sec).min(self.rate.burst);
        self.updated = self.updated.max(now);
    }

    /// Takes a token at `now`; when there is none, takes nothing and returns how long until
    /// there is one.
    pub fn try_take(&mut self, now: Instant) -> Result<(), Duration> {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                (1.0 - self.tokens) / self.rate.per_sec,
            ))
        }
    }

    /// Tokens the bucket holds when full.
    pub fn burst(&self) -> f64 {
        self.rate.burst
    }

    /// Whether the bucket is full at `now` (so it is as good as a new one).
    pub fn is_full(&self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens + elapsed * self.rate.per_sec >= self.rate.burst
    }
}

/// `Retry-After` seconds for a wait: whole seconds, rounded up, at least 1.
pub fn retry_after_secs(wait: Duration) -> u64 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    secs.max(1)
}

/// Buckets are pruned when the map reaches this size (or twice the size after the last
/// pruning, whichever is larger), so pruning costs O(1) per call amortized.
const PRUNE_AT_LEAST: usize = 1024;

/// One bucket per key, all at one rate. `None` rate: everything passes, nothing is kept.
#[derive(Debug)]
pub struct KeyedLimiter<K> {
    rate: Option<Rate>,
    state: Mutex<Keyed<K>>,
}

#[derive(Debug)]
struct Keyed<K> {
    buckets: HashMap<K, TokenBucket>,
    prune_at: usize,
}

impl<K: Hash + Eq> KeyedLimiter<K> {
    pub fn new(rate: Option<Rate>) -> Self {
        KeyedLimiter {
            rate,
            state: Mutex::new(Keyed {
                buckets: HashMap::new(),
                prune_at: PRUNE_AT_LEAST,
            }),
        }
    }

    /// Takes a token from `key`'s bucket at `now`, or says how long to wait.
    pub fn check(&self, key: K, now: Instant) -> Result<(), Duration> {
        let Some(rate) = self.rate else {
            return Ok(());
        };
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.buckets.len() >= state.prune_at {
            state.buckets.retain(|_, b| !b.is_full(now));
            state.prune_at = (state.buckets.len() * 2).max(PRUNE_AT_LEAST);
        }
        state
            .buckets
            .entry(key)
            .or_insert_with(|| TokenBucket::new(rate, now))
            .try_take(now)
    }

    /// Buckets kept now.
    #[cfg(test)]
    pub fn tracked(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .buckets
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(Rate::new(10.0, 5).unwrap(), t0);
        for _ in 0..5 {
            assert_eq!(b.try_take(t0), Ok(()));
        }
        let wait = b.try_take(t0).unwrap_err();
        assert!((wait.as_secs_f64() - 0.1).abs() < 1e-9, "{wait:?}");
        // A refused event takes nothing: the wait shrinks as time passes.
        let wait = b.try_take(t0 + ms(40)).unwrap_err();
        assert!((wait.as_secs_f64() - 0.06).abs() < 1e-9, "{wait:?}");
        assert_eq!(b.try_take(t0 + ms(100)), Ok(()));
        assert!(b.try_take(t0 + ms(100)).is_err());
        // Over a long run the rate holds: 10 a second.
        let mut passed = 0;
        for i in 1..=1000u64 {
            if b.try_take(t0 + ms(100) + ms(i)).is_ok() {
                passed += 1;
            }
        }
        assert_eq!(passed, 10);
    }

    #[test]
    fn refills_up_to_the_burst_only() {
        let t0 = Instant::now();
        let rate = Rate::new(2.0, 3).unwrap();
        let mut b = TokenBucket::new(rate, t0);
        assert!(b.is_full(t0));
        b.try_take(t0).unwrap();
        assert!(!b.is_full(t0));
        assert!(b.is_full(t0 + ms(500)));
        let later = t0 + Duration::from_secs(3600);
        let taken = (0..10).filter(|_| b.try_take(later).is_ok()).count();
        assert_eq!(taken, 3);
    }

    #[test]
    fn a_clock_that_goes_back_adds_nothing() {
        let t0 = Instant::now() + Duration::from_secs(10);
        let mut b = TokenBucket::new(Rate::new(1.0, 1).unwrap(), t0);
        b.try_take(t0).unwrap();
        assert!(b.try_take(t0 - Duration::from_secs(5)).is_err());
        assert!(b.try_take(t0 + ms(999)).is_err());
        assert!(b.try_take(t0 + ms(1000)).is_ok());
    }

    #[test]
    fn rates() {
        assert_eq!(Rate::new(0.0, 10), None);
        assert_eq!(Rate::new(-1.0, 10), None);
        assert_eq!(Rate::new(f64::NAN, 10), None);
        assert_eq!(Rate::new(f64::INFINITY, 10), None);
        assert_eq!(Rate::new(0.5, 0).unwrap().burst(), 1.0);
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(ms(1)), 1);
        assert_eq!(retry_after_secs(ms(1000)), 1);
        assert_eq!(retry_after_secs(ms(1001)), 2);
    }

    #[test]
    fn keys_have_their_own_buckets_and_full_ones_are_forgotten() {
        let t0 = Instant::now();
        let limiter = KeyedLimiter::new(Rate::new(1.0, 2));
        assert!(limiter.check("a", t0).is_ok());
        assert!(limiter.check("a", t0).is_ok());
        assert!(limiter.check("a", t0).is_err());
        assert!(limiter.check("b", t0).is_ok());
        // Many one-off keys: the map is pruned of full buckets and stays bounded.
        for i in 0..10_000u64 {
            let now = t0 + Duration::from_secs(10) + ms(i);
            limiter.check(format!("k{i}").leak(), now).unwrap();
            assert!(
                limiter.tracked() <= 2 * PRUNE_AT_LEAST,
                "{}",
                limiter.tracked()
            );
        }
        let off: KeyedLimiter<&str> = KeyedLimiter::new(None);
        for _ in 0..1000 {
            assert!(off.check("a", t0).is_ok());
        }
        assert_eq!(off.tracked(), 0);
    }
}
