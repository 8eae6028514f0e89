//! [`Heartbeat`]: when to ping, and when a client is gone (pure, driven by the connection).

use std::time::Duration;

use tokio::time::Instant;

use crate::conn::Protocol;

/// Engine.IO 4: the server pings every `interval`; a client that has not answered (`3`)
/// within `timeout` is gone. Engine.IO 3: the client pings; one that has sent nothing for
/// `interval + timeout` is gone.
#[derive(Debug)]
pub(crate) struct Heartbeat {
    protocol: Protocol,
    interval: Duration,
    timeout: Duration,
    /// The next ping (or, while `awaiting`, the deadline of its answer); Engine.IO 3: the
    /// deadline of the client's next packet.
    next: Instant,
    awaiting: bool,
}

/// What to do at the deadline.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Beat {
    Wait,
    Ping,
    Dead,
}

impl Heartbeat {
    pub(crate) fn new(
        now: Instant,
        protocol: Protocol,
        interval: Duration,
        timeout: Duration,
    ) -> Self {
        let next = match protocol {
            Protocol::V5 => now + interval,
            Protocol::V4 => now + interval + timeout,
        };
        Heartbeat {
            protocol,
            interval,
            timeout,
            next,
            awaiting: false,
        }
    }

    pub(crate) fn deadline(&self) -> Instant {
        self.next
    }

    /// Any packet from the client (Engine.IO 3 counts it as a sign of life).
    pub(crate) fn on_packet(&mut self, now: Instant) {
        if self.protocol == Protocol::V4 {
            self.next = now + self.interval + self.timeout;
        }
    }

    /// The answer to the ping: the next one is due one interval after the last one (not
    /// after the pong), or now if a late pong makes that past already.
    pub(crate) fn on_pong(&mut self, now: Instant) {
        if self.protocol == Protocol::V5 && self.awaiting {
            let sent = self.next - self.timeout;
            self.next = (sent + self.interval).max(now);
            self.awaiting = false;
        }
    }

    /// Called when the timer fires. `lenient`: the connection is not reading (its handler is
    /// behind, or it is closing), so a missing answer is not the client's fault.
    pub(crate) fn on_deadline(&mut self, now: Instant, lenient: bool) -> Beat {
        if now < self.next {
            return Beat::Wait;
        }
        if lenient {
            self.next = now + self.timeout;
            return Beat::Wait;
        }
        match (self.protocol, self.awaiting) {
            (Protocol::V5, false) => {
                self.awaiting = true;
                // From the scheduled time, so that timer lateness does not add up.
                self.next += self.timeout;
                if self.next <= now {
                    self.next = now + self.timeout;
                }
                Beat::Ping
            }
            _ => {
                self.next = now + self.interval;
                Beat::Dead
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INTERVAL: Duration = Duration::from_secs(25);
    const TIMEOUT: Duration = Duration::from_secs(20);

    #[test]
    fn v4_pings_then_waits_for_the_pong() {
        let start = Instant::now();
        let mut beat = Heartbeat::new(start, Protocol::V5, INTERVAL, TIMEOUT);
        assert_eq!(beat.deadline(), start + INTERVAL);
        assert_eq!(beat.on_deadline(start + INTERVAL / 2, false), Beat::Wait);

        let first = start + INTERVAL;
        assert_eq!(beat.on_deadline(first, false), Beat::Ping);
        assert_eq!(beat.deadline(), first + TIMEOUT);
        // The next ping one interval after the last one, not after the pong.
        beat.on_pong(first + Duration::from_secs(1));
        assert_eq!(beat.deadline(), first + INTERVAL);

        let second = first + INTERVAL;
        assert_eq!(beat.on_deadline(second, false), Beat::Ping);
        assert_eq!(beat.on_deadline(second + TIMEOUT, false), Beat::Dead);
    }

    #[test]
    fn a_late_pong_makes_the_next_ping_due_now() {
        let start = Instant::now();
        let interval = Duration::from_millis(200);
        let timeout = Duration::from_millis(400);
        let mut beat = Heartbeat::new(start, Protocol::V5, interval, timeout);
        assert_eq!(beat.on_deadline(start + interval, false), Beat::Ping);
        let pong = start + interval + Duration::from_millis(300);
        beat.on_pong(pong);
        assert_eq!(beat.deadline(), pong);
        // The timer fires a little late: the answer is due a timeout after the ping was due.
        let late = pong + Duration::from_millis(5);
        assert_eq!(beat.on_deadline(late, false), Beat::Ping);
        assert_eq!(beat.deadline(), pong + timeout);
    }

    #[test]
    fn an_unsolicited_pong_changes_nothing() {
        let start = Instant::now();
        let mut beat = Heartbeat::new(start, Protocol::V5, INTERVAL, TIMEOUT);
        beat.on_pong(start + Duration::from_secs(1));
        assert_eq!(beat.deadline(), start + INTERVAL);
    }

    #[test]
    fn no_one_is_declared_dead_while_the_connection_is_not_reading() {
        let start = Instant::now();
        let mut beat = Heartbeat::new(start, Protocol::V5, INTERVAL, TIMEOUT);
        assert_eq!(beat.on_deadline(start + INTERVAL, false), Beat::Ping);
        let due = start + INTERVAL + TIMEOUT;
        assert_eq!(beat.on_deadline(due, true), Beat::Wait);
        assert_eq!(beat.deadline(), due + TIMEOUT);
        assert_eq!(beat.on_deadline(due + TIMEOUT, false), Beat::Dead);
    }

    #[test]
    fn v3_clients_must_send_something_in_time() {
        let start = Instant::now();
        let mut beat = Heartbeat::new(start, Protocol::V4, INTERVAL, TIMEOUT);
        assert_eq!(beat.deadline(), start + INTERVAL + TIMEOUT);
        let ping = start + INTERVAL;
        beat.on_packet(ping);
        beat.on_pong(ping); // ignored in Engine.IO 3
        assert_eq!(beat.deadline(), ping + INTERVAL + TIMEOUT);
        assert_eq!(beat.on_deadline(ping + INTERVAL, false), Beat::Wait);
        assert_eq!(
            beat.on_deadline(ping + INTERVAL + TIMEOUT, false),
            Beat::Dead
        );
    }
}
