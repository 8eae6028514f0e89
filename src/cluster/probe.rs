//! Detects a subscription that silently stopped delivering (the connection looks healthy,
//! commands work, but published messages no longer arrive): a token is published on a
//! channel only this instance subscribes to, through the normal publish path; if tokens
//! stop coming back, the subscription is rebuilt. Pure: the supervisor feeds it the clock.

use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct Probe {
    every: Duration,
    patience: Duration,
    next_token: u64,
    /// The oldest token sent and not yet seen back, with when it was sent.
    outstanding: Option<(u64, Instant)>,
    last_sent: Option<Instant>,
}

/// What the supervisor should do on a tick.
#[derive(Debug, PartialEq, Eq)]
pub enum ProbeAction {
    Nothing,
    /// Publish this token on the probe channel.
    Send(u64),
    /// A token did not come back in time: rebuild the subscription.
    Resubscribe,
}

impl Probe {
    pub fn new(every: Duration, patience: Duration) -> Self {
        Probe {
            every,
            patience,
            next_token: 1,
            outstanding: None,
            last_sent: None,
        }
    }

    /// Forgets outstanding tokens (after a reconnect, nothing sent before can be judged).
    pub fn reset(&mut self) {
        self.outstanding = None;
        self.last_sent = None;
    }

    pub fn tick(&mut self, now: Instant) -> ProbeAction {
        if let Some((_, sent)) = self.outstanding
            && now.duration_since(sent) > self.patience
        {
            self.reset();
            return ProbeAction::Resubscribe;
        }
        if self
            .last_sent
            .is_some_and(|last| now.duration_since(last) < self.every)
        {
            return ProbeAction::Nothing;
        }
        let token = self.next_token;
        self.next_token += 1;
        self.last_sent = Some(now);
        if self.outstanding.is_none() {
            self.outstanding = Some((token, now));
        }
        ProbeAction::Send(token)
    }

    /// A token came back through the subscription: everything up to it is delivered.
    pub fn received(&mut self, token: u64) {
        if self.outstanding.is_some_and(|(t, _)| token >= t) {
            self.outstanding = None;
        }
    }

    /// Seconds since the outstanding token was sent.
    #[cfg(test)]
    pub fn waiting_for(&self, now: Instant) -> Option<Duration> {
        self.outstanding.map(|(_, sent)| now.duration_since(sent))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn tokens_that_come_back_keep_the_subscription() {
        let mut p = Probe::new(2 * S, 5 * S);
        let t0 = Instant::now();
        assert_eq!(p.tick(t0), ProbeAction::Send(1));
        assert_eq!(p.tick(t0 + S), ProbeAction::Nothing);
        p.received(1);
        assert_eq!(p.tick(t0 + 2 * S), ProbeAction::Send(2));
        p.received(2);
        for i in 2..20 {
            match p.tick(t0 + i * 2 * S) {
                ProbeAction::Send(token) => p.received(token),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn a_token_that_never_comes_back_triggers_a_resubscribe() {
        let mut p = Probe::new(2 * S, 5 * S);
        let t0 = Instant::now();
        assert_eq!(p.tick(t0), ProbeAction::Send(1));
        assert_eq!(p.tick(t0 + 2 * S), ProbeAction::Send(2));
        assert_eq!(p.tick(t0 + 4 * S), ProbeAction::Send(3));
        // A later token does not excuse the first one.
        assert_eq!(p.waiting_for(t0 + 5 * S), Some(5 * S));
        assert_eq!(p.tick(t0 + 6 * S), ProbeAction::Resubscribe);
        // After the rebuild, probing starts afresh.
        assert_eq!(p.tick(t0 + 6 * S), ProbeAction::Send(4));
    }

    #[test]
    fn a_late_token_still_counts() {
        let mut p = Probe::new(2 * S, 5 * S);
        let t0 = Instant::now();
        assert_eq!(p.tick(t0), ProbeAction::Send(1));
        assert_eq!(p.tick(t0 + 2 * S), ProbeAction::Send(2));
        p.received(2);
        assert_eq!(p.waiting_for(t0 + 3 * S), None);
        assert_eq!(p.tick(t0 + 4 * S), ProbeAction::Send(3));
    }
}
