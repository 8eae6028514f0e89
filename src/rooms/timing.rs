//! When a command takes effect (pure). Clients probe the server's clock with `time_sync`
//! and report each probe's round-trip time; a room schedules its starts far enough ahead
//! that its slowest member hears of them in time:
//!
//! lead = clamp(2 × the highest recent p95 RTT among the room's members, 150 ms, 1500 ms).
//!
//! The floor keeps a start in the future even for members that never probe (seed clients):
//! 150 ms covers a one-way delay of up to 75 ms with margin. The ceiling bounds how long a
//! room waits for a member on a terrible link. A host may choose its own instant (`at`),
//! clamped to [now, now + 10 s].

use std::collections::VecDeque;

/// Smallest lead, ms.
pub const MIN_LEAD_MS: u64 = 150;
/// Largest lead, ms.
pub const MAX_LEAD_MS: u64 = 1500;
/// Farthest a host may schedule a command ahead, ms.
pub const MAX_AHEAD_MS: u64 = 10_000;
/// RTT samples kept per connection.
const SAMPLES: usize = 16;
/// Longest RTT sample believed, ms (anything longer is a stalled client, not a network).
const MAX_RTT_MS: f64 = 10_000.0;

/// A connection's recent round-trip times, as its client reported them.
#[derive(Debug, Default, Clone)]
pub struct Rtts {
    samples: VecDeque<f64>,
}

impl Rtts {
    /// Records one sample (ms); nonsense (negative, not finite, absurdly long) is ignored.
    pub fn record(&mut self, rtt_ms: f64) {
        if !(rtt_ms.is_finite() && (0.0..=MAX_RTT_MS).contains(&rtt_ms)) {
            return;
        }
        if self.samples.len() == SAMPLES {
            self.samples.pop_front();
        }
        self.samples.push_back(rtt_ms);
    }

    /// The 95th percentile of the recent samples (nearest rank), if there are any.
    pub fn p95(&self) -> Option<f64> {
        if self.samples.is_empty() {
            return None;
        }
        let mut sorted: Vec<f64> = self.samples.iter().copied().collect();
        sorted.sort_by(f64::total_cmp);
        let rank = (sorted.len() * 95).div_ceil(100).max(1);
        sorted.get(rank - 1).copied()
    }
}

/// The lead for a room whose members' highest recent p95 RTT is `worst_p95_ms` (`None`:
/// nobody has probed).
pub fn lead_ms(worst_p95_ms: Option<f64>) -> u64 {
    let wanted = worst_p95_ms.map_or(0.0, |rtt| 2.0 * rtt).ceil() as u64;
    wanted.clamp(MIN_LEAD_MS, MAX_LEAD_MS)
}

/// The instant a command takes effect: the host's own `at` clamped to
/// [now, now + 10 s], or now + `lead_ms` for a command that starts playback, or now.
pub fn schedule(now_ms: u64, at: Option<f64>, lead_ms: Option<u64>) -> u64 {
    match at {
        Some(at) if at.is_finite() => {
            let latest = now_ms + MAX_AHEAD_MS;
            (at.max(0.0).round() as u64).clamp(now_ms, latest)
        }
        _ => now_ms + lead_ms.unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn p95_of_recent_samples() {
        let mut r = Rtts::default();
        assert_eq!(r.p95(), None);
        for ms in 1..=20 {
            r.record(f64::from(ms));
        }
        // Only the last 16 (5..=20) count; the nearest-rank p95 of 16 samples is the 16th.
        assert_eq!(r.p95(), Some(20.0));
        r.record(-1.0);
        r.record(f64::NAN);
        r.record(1e9);
        assert_eq!(r.p95(), Some(20.0), "nonsense is ignored");
        let mut one = Rtts::default();
        one.record(40.0);
        assert_eq!(one.p95(), Some(40.0));
    }

    #[test]
    fn lead_is_twice_the_worst_p95_within_bounds() {
        assert_eq!(lead_ms(None), 150);
        assert_eq!(lead_ms(Some(20.0)), 150);
        assert_eq!(lead_ms(Some(100.2)), 201);
        assert_eq!(lead_ms(Some(5000.0)), 1500);
    }

    #[test]
    fn a_hosts_instant_is_clamped_to_the_next_ten_seconds() {
        assert_eq!(schedule(1_000, None, None), 1_000);
        assert_eq!(schedule(1_000, None, Some(150)), 1_150);
        assert_eq!(schedule(1_000, Some(4_000.4), Some(150)), 4_000);
        assert_eq!(schedule(1_000, Some(10.0), Some(150)), 1_000);
        assert_eq!(schedule(1_000, Some(1e15), None), 11_000);
        assert_eq!(schedule(1_000, Some(f64::NAN), Some(150)), 1_150);
    }
}
