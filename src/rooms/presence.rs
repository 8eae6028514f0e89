//! Connections that drop and come back. A client that sent a `client_id` and loses its
//! connection without leaving stays a member, marked away, for the resume grace, with its
//! role and seniority; nobody is told (the room sees no `room_users`). Reconnecting with the
//! same `client_id` within the grace, on any instance, resumes it: the server sends
//! `room_joined` and `sync_state` by itself. A second live connection with the same
//! `client_id` takes the member over, and the first gets `error {code: "replaced"}` and is
//! disconnected. After the grace the member leaves as any other would, host handover
//! included. Clients without a `client_id` leave when their connection drops, as in the seed.
//!
//! The deadlines (grace ends, ready timeouts) are kept in the registry's timers, which
//! [`housekeeping`] runs.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::Rooms;
use super::access::{self, ClientKey};
use super::model::MemberId;
use super::protocol::{ErrorCode, Invalid, ServerEvent};
use super::registry::{Connection, Due, Entry};
use super::roster::Member;
use super::shared::{self, Outcome};
use crate::clock::now_ms;

impl Rooms {
    /// The member id a new connection with `client` (its `client_id`'s key) takes: the
    /// member it already has in a room, or a fresh one.
    pub(crate) async fn member_for(&self, client: &ClientKey) -> MemberId {
        if let Some(seat) = self.registry.seat_of(client) {
            return seat.member;
        }
        if let Some(bp) = self.shared()
            && let Ok(Some((_, member))) = shared::seat_of(bp, client).await
        {
            return member;
        }
        MemberId::from(access::new_member_id())
    }

    /// A connection with a `client_id` connected: if its member is in a room (away, or on
    /// another connection), it takes it over and gets `room_joined` and `sync_state`.
    pub(crate) async fn resume(&self, conn: &Arc<Connection>) {
        let Some(client) = conn.client() else {
            return;
        };
        let member = conn.member();
        let room = match self.registry.seat_of(client) {
            Some(seat) if seat.member == *member => Some(seat.room),
            _ => None,
        };
        let room = match (room, self.shared()) {
            (Some(room), _) => room,
            (None, Some(bp)) => match shared::seat_of(bp, client).await {
                Ok(Some((room, m))) if m == *member => room,
                _ => return,
            },
            (None, None) => return,
        };
        let slot = self.registry.slot_or_empty(&room);
        let mut guard = slot.lock().await;
        if let Some(bp) = self.shared() {
            match shared::resume(bp, &room, member).await {
                Ok(Outcome::Done(fact)) => {
                    let entry = guard.get_or_insert_with(|| Entry::new(fact.mirror()));
                    if !entry.room.is_member(member) {
                        let record = fact
                            .roster_record(member)
                            .unwrap_or_else(|| Member::new(member.clone(), None));
                        entry.room.join_as(record);
                    }
                    self.apply_fact(entry, &fact);
                    self.take_over(entry, conn, &room);
                    return;
                }
                Ok(_) => {
                    if guard.is_none() {
                        self.registry.forget(&room, &slot);
                    }
                    self.registry.unseat(client);
                    return;
                }
                Err(_) => {} // Redis failed: resumed here alone
            }
        }
        match guard.as_mut() {
            Some(entry) if entry.room.is_member(member) => {
                self.changed_locally(entry);
                self.take_over(entry, conn, &room);
            }
            _ => {
                if guard.is_none() {
                    self.registry.forget(&room, &slot);
                }
                self.registry.unseat(client);
            }
        }
    }

    /// `conn` becomes the connection of its member in `entry`: a previous live connection
    /// is told `replaced` and disconnected; the member is present again; `conn` gets the
    /// room as on a join.
    fn take_over(&self, entry: &mut Entry, conn: &Arc<Connection>, key: &str) {
        let member = conn.member();
        if let Some(previous) = entry.locals.remove(member)
            && !Arc::ptr_eq(&previous, conn)
        {
            replaced(&previous);
        }
        entry.room.resume(member);
        self.entered(entry, conn, key);
        tracing::info!(room = %key, %member, "member resumed");
        let mut view = entry.client_view(&entry.room.id.raw, now_ms(), true);
        view.member_id = Some(member.clone());
        conn.send(ServerEvent::RoomJoined, &view);
        if let Some(play) = view.play.as_ref().filter(|p| !p.current_track.is_null()) {
            conn.send(ServerEvent::SyncState, play);
        }
    }

    /// A connection ended. `explicit`: the client disconnected itself (a leave). Otherwise a
    /// client with a `client_id` stays, away, for the grace; one without leaves.
    pub(crate) async fn disconnect(&self, conn: &Arc<Connection>, explicit: bool) {
        if explicit || conn.client().is_none() {
            return self.leave(conn).await;
        }
        let Some(key) = conn.room().take() else {
            return;
        };
        let Some(slot) = self.registry.slot(&key) else {
            return;
        };
        let mut guard = slot.lock().await;
        let Some(entry) = guard.as_mut() else {
            return;
        };
        let member = conn.member();
        if !entry
            .locals
            .get(member)
            .is_some_and(|c| Arc::ptr_eq(c, conn))
        {
            return; // another connection took this member over
        }
        entry.locals.remove(member);
        let now = now_ms();
        let grace = self.config.resume_grace.as_millis() as u64;
        self.registry.timers.expire(&key, member, now + grace);
        entry.room.mark_away(member, now);
        tracing::debug!(room = %key, %member, "member away");
        if let Some(bp) = self.shared() {
            let start = now + super::timing::lead_ms(entry.worst_rtt());
            match shared::away(bp, &key, member, now, start).await {
                Ok(Outcome::Done(fact)) => return self.apply_fact(entry, &fact),
                Ok(_) => return,
                Err(_) => {} // Redis failed: decided here instead
            }
        }
        self.changed_locally(entry);
        self.settle_wait(entry, now);
    }

    /// A member's grace may have ended: if it is still away, it leaves.
    async fn expire(&self, key: &str, member: &MemberId) {
        let Some(slot) = self.registry.slot(key) else {
            return;
        };
        let mut guard = slot.lock().await;
        let grace = self.config.resume_grace.as_millis() as u64;
        let before = (now_ms() + 1).saturating_sub(grace);
        let client = guard
            .as_ref()
            .and_then(|e| e.room.roster().get(member))
            .filter(|m| m.away_since.is_some_and(|since| since < before))
            .and_then(|m| m.client.clone());
        tracing::debug!(room = %key, %member, "the grace of an away member ended");
        self.remove_member(key, &slot, &mut guard, member, Some(before))
            .await;
        if let Some(client) = client {
            self.registry.unseat(&client);
        }
    }

    /// Runs what is due now.
    pub(super) async fn run_due(&self) {
        for due in self.registry.timers.due(now_ms()) {
            match due {
                Due::Expire { room, member } => self.expire(&room, &member).await,
                Due::WaitEnd { room } => self.end_wait(&room).await,
            }
        }
    }

    /// A fact says another instance took a member over: its connection here goes.
    pub(super) fn replaced_elsewhere(&self, entry: &mut Entry, member: &MemberId) {
        if let Some(previous) = entry.locals.remove(member) {
            replaced(&previous);
        }
        entry.room.drop_member(member);
    }
}

/// Tells a connection another one took its member over, and disconnects it.
fn replaced(previous: &Connection) {
    previous.room().take();
    previous.send(
        ServerEvent::Error,
        &Invalid::new(
            ErrorCode::Replaced,
            "another connection with the same client_id took this member over",
        ),
    );
    previous.close();
}

/// The rooms' background work, until `shutdown`: members whose grace ended leave, waiting
/// starts reach their deadline (checked every 100 ms), and empty rooms left behind are
/// swept every `sweep_every`.
pub(crate) async fn housekeeping(
    rooms: Arc<Rooms>,
    sweep_every: Duration,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_sweep = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {
                rooms.run_due().await;
                if last_sweep.elapsed() >= sweep_every {
                    last_sweep = tokio::time::Instant::now();
                    let removed = rooms.sweep().await;
                    if removed > 0 {
                        tracing::info!(removed, "swept empty rooms");
                    }
                }
            }
        }
    }
}
