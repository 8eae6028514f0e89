//! The requests of members in a room: playback commands (scheduled on the server clock, and
//! in wait-for-ready rooms held until the members are ready), `ready`, handing the host role
//! over, co-hosts, and clock probes. Each is decided (the model alone, or a Redis script) into
//! a [`Change`] and applied (see [`super::service`]).

use std::sync::Arc;

use super::Rooms;
use super::model::{
    Cause, Change, CommandKind, Control, MemberId, PlayState, RoomId, RosterChange,
};
use super::protocol::{ErrorCode, Invalid};
use super::registry::{Connection, Entry, Locked};
use super::room::Readiness;
use super::roster::Role;
use super::shared::{self, Outcome};
use super::timing;
use super::views::Reply;
use crate::clock::now_ms;

impl Rooms {
    /// Locks the room `room` that `conn` is in; refused if it does not exist or `conn` is not
    /// in it.
    async fn locked(&self, conn: &Connection, room: &RoomId) -> Result<Locked, Invalid> {
        let slot = self
            .registry
            .slot(&room.key)
            .ok_or_else(|| Invalid::room_not_found(room))?;
        let guard = slot.lock_owned().await;
        if guard.is_none() {
            return Err(Invalid::room_not_found(room));
        }
        if !conn.is_in(&room.key) {
            return Err(not_member(room));
        }
        Ok(guard)
    }

    /// A playback command: applied and relayed to the other members, or refused (not
    /// allowed to control, no such room) with nothing changed. Starts (play, seek, track
    /// change) take effect a lead ahead; in a wait-for-ready room, once every present member
    /// is ready or at the ready timeout.
    pub(crate) async fn control(
        &self,
        conn: &Arc<Connection>,
        room: RoomId,
        cmd: Control,
        at: Option<f64>,
    ) -> Result<Reply, Invalid> {
        let member = conn.member();
        let kind = cmd.kind();
        if let Some(bp) = self.shared() {
            self.reconcile_key(&room.key).await;
            let slot = self.registry.slot(&room.key);
            let mut guard = match &slot {
                Some(slot) => Some(slot.lock().await),
                None => None,
            };
            let entry = guard.as_mut().and_then(|g| g.as_mut());
            let now = now_ms();
            let start = self.start_of(kind, at, now, entry.as_deref());
            let args = shared::ControlArgs {
                room: &room.key,
                member,
                cmd: &cmd,
                now,
                start,
                deadline: now + self.ready_timeout_ms(),
                start_waiting: self.start_after_wait(now, entry.as_deref()),
            };
            match shared::control(bp, args).await {
                Ok(Outcome::Done(fact)) => {
                    if let Some(entry) = entry {
                        self.apply_fact(entry, &fact);
                    }
                    return Ok(Self::command_reply(&fact.play, now));
                }
                Ok(Outcome::Refused(why)) if why == "not_host" => return Err(Invalid::not_host()),
                Ok(_) => return Err(Invalid::room_not_found(&room)),
                Err(_) => {} // Redis failed: decided here instead
            }
        }
        let Some(slot) = self.registry.slot(&room.key) else {
            return Err(Invalid::room_not_found(&room));
        };
        let mut guard = slot.lock().await;
        let Some(entry) = guard.as_mut() else {
            return Err(Invalid::room_not_found(&room));
        };
        let now = now_ms();
        let waits = kind.starts_playback() && entry.room.settings.wait_for_ready;
        let start = if waits {
            self.start_after_wait(now, Some(entry))
                .max(self.start_of(kind, at, now, Some(entry)))
        } else {
            self.start_of(kind, at, now, Some(entry))
        };
        let play = entry
            .room
            .decide_control(member, cmd, start)
            .map_err(|_| Invalid::not_host())?;
        let reply = Self::command_reply(&play, now);
        let mut change = Change::command(kind, member.clone(), play);
        if waits {
            let deadline = now + self.ready_timeout_ms();
            change.waiting = Some(entry.room.begin_wait(deadline).waiting_for.clone());
            self.registry.timers.wait_end(&room.key, deadline);
        }
        self.changed_locally(entry);
        self.apply(entry, &change);
        Ok(reply)
    }

    fn ready_timeout_ms(&self) -> u64 {
        self.config.ready_timeout.as_millis() as u64
    }

    /// When a command of `kind` decided at `now` takes effect: the host's `at`, or far
    /// enough ahead that every member here hears of a new start in time (see [`timing`]).
    fn start_of(&self, kind: CommandKind, at: Option<f64>, now: u64, entry: Option<&Entry>) -> u64 {
        let lead = kind
            .starts_playback()
            .then(|| timing::lead_ms(entry.and_then(Entry::worst_rtt)));
        timing::schedule(now, at, lead)
    }

    /// When a start that waits for members decided at `now` takes effect at the latest: the
    /// ready timeout, plus the lead.
    fn start_after_wait(&self, now: u64, entry: Option<&Entry>) -> u64 {
        now + self.ready_timeout_ms() + timing::lead_ms(entry.and_then(Entry::worst_rtt))
    }

    /// The acknowledgement of a host command: the timeline it set.
    fn command_reply(play: &PlayState, now: u64) -> Reply {
        Reply::Command {
            is_playing: play.is_playing,
            current_time: play.time,
            server_time: now,
            start_at: play.start_at,
            playback_rate: play.rate,
        }
    }

    /// `ready`: the member is (or is no longer) ready to play the room's current state. When
    /// it was the last one a start waited for, the start is scheduled now.
    pub(crate) async fn ready(
        &self,
        conn: &Arc<Connection>,
        room: RoomId,
        ready: bool,
    ) -> Result<Reply, Invalid> {
        let mut guard = self.locked(conn, &room).await?;
        let Some(entry) = guard.as_mut() else {
            return Err(Invalid::room_not_found(&room));
        };
        let member = conn.member();
        let now = now_ms();
        if let Some(bp) = self.shared() {
            let start = now + timing::lead_ms(entry.worst_rtt());
            if let Ok(outcome) = shared::ready(bp, &room.key, member, ready, start).await {
                if let Outcome::Done(fact) = &outcome {
                    self.apply_fact(entry, fact);
                }
                entry.room.set_ready(member, ready).ok();
                return Ok(Reply::Done { room_id: room.raw });
            }
        }
        let change = match entry
            .room
            .set_ready(member, ready)
            .map_err(|_| not_member(&room))?
        {
            Readiness::Noted => None,
            Readiness::Waiting(members) => Some(Change {
                waiting: Some(members),
                ..Change::none(Cause::Resync)
            }),
            Readiness::AllReady => Some(self.start_now(entry, now)),
        };
        if let Some(change) = change {
            self.changed_locally(entry);
            self.apply(entry, &change);
        }
        Ok(Reply::Done { room_id: room.raw })
    }

    /// A waiting start goes ahead now: it takes effect a lead ahead (or at its provisional
    /// instant, if that is sooner).
    fn start_now(&self, entry: &mut Entry, now: u64) -> Change {
        entry.room.wait = None;
        let mut play = entry.room.play.clone();
        play.start_at = play.start_at.min(now + timing::lead_ms(entry.worst_rtt()));
        Change {
            play: Some(play),
            waiting: Some(Vec::new()),
            ..Change::none(Cause::Resync)
        }
    }

    /// After a member left or went away: a start that waited only for it goes ahead.
    pub(super) fn settle_wait(&self, entry: &mut Entry, now: u64) {
        if entry
            .room
            .wait
            .as_ref()
            .is_some_and(|w| w.waiting_for.is_empty())
        {
            let change = self.start_now(entry, now);
            self.apply(entry, &change);
        }
    }

    /// The deadline of a waiting start in room `key` passed: it goes ahead at its
    /// provisional instant without the members that were not ready.
    pub(super) async fn end_wait(&self, key: &str) {
        let Some(slot) = self.registry.slot(key) else {
            return;
        };
        let mut guard = slot.lock().await;
        let Some(entry) = guard.as_mut() else {
            return;
        };
        let now = now_ms();
        if let Some(bp) = self.shared() {
            match shared::wait_end(bp, key, now).await {
                Ok(Outcome::Done(fact)) => return self.apply_fact(entry, &fact),
                Ok(_) => return,
                Err(_) => {} // Redis failed: decided here instead
            }
        }
        if entry.room.end_wait(now) {
            tracing::debug!(room = %key, "ready timeout: the start goes ahead");
            let change = Change {
                play: Some(entry.room.play.clone()),
                waiting: Some(Vec::new()),
                ..Change::none(Cause::Resync)
            };
            self.changed_locally(entry);
            self.apply(entry, &change);
        }
    }

    /// `transfer_host`: the host hands its role to another member.
    pub(crate) async fn transfer_host(
        &self,
        conn: &Arc<Connection>,
        room: RoomId,
        to: MemberId,
    ) -> Result<Reply, Invalid> {
        let mut guard = self.locked(conn, &room).await?;
        let Some(entry) = guard.as_mut() else {
            return Err(Invalid::room_not_found(&room));
        };
        let member = conn.member();
        let now = now_ms();
        if let Some(bp) = self.shared()
            && let Ok(outcome) = shared::transfer(bp, &room.key, member, &to, now).await
        {
            return match outcome {
                Outcome::Done(fact) => {
                    self.apply_fact(entry, &fact);
                    Ok(Reply::Done { room_id: room.raw })
                }
                Outcome::Refused(why) if why == "not_member" => Err(not_a_member(&to)),
                _ => Err(Invalid::not_host()),
            };
        }
        let host =
            entry
                .room
                .decide_transfer(member, &to, now)
                .map_err(|refusal| match refusal {
                    super::model::Refusal::NotMember => not_a_member(&to),
                    super::model::Refusal::NotHost => Invalid::not_host(),
                })?;
        self.changed_locally(entry);
        let change = Change {
            host: Some(host),
            ..Change::none(Cause::Membership)
        };
        self.apply(entry, &change);
        Ok(Reply::Done { room_id: room.raw })
    }

    /// `set_role`: the host makes a member a co-host (who may control, and is first in
    /// line at a handover) or a plain member again.
    pub(crate) async fn set_role(
        &self,
        conn: &Arc<Connection>,
        room: RoomId,
        target: MemberId,
        role: Role,
    ) -> Result<Reply, Invalid> {
        let mut guard = self.locked(conn, &room).await?;
        let Some(entry) = guard.as_mut() else {
            return Err(Invalid::room_not_found(&room));
        };
        let member = conn.member();
        if let Some(bp) = self.shared()
            && let Ok(outcome) = shared::set_role(bp, &room.key, member, &target, role).await
        {
            return match outcome {
                Outcome::Done(fact) => {
                    if let Some(local) = entry.room.member_mut(&target) {
                        local.role = role;
                    }
                    self.apply_fact(entry, &fact);
                    Ok(Reply::Done { room_id: room.raw })
                }
                Outcome::Refused(why) if why == "not_member" => Err(not_a_member(&target)),
                _ => Err(Invalid::not_host()),
            };
        }
        let changed =
            entry
                .room
                .set_role(member, &target, role)
                .map_err(|refusal| match refusal {
                    super::model::Refusal::NotMember => not_a_member(&target),
                    super::model::Refusal::NotHost => Invalid::not_host(),
                })?;
        if changed {
            self.changed_locally(entry);
            let change = Change {
                roster: RosterChange::Local,
                ..Change::none(Cause::Membership)
            };
            self.apply(entry, &change);
        }
        Ok(Reply::Done { room_id: room.raw })
    }

    /// `time_sync`: records the client's last round-trip time and answers with the server's
    /// clock when the probe arrived (`received`) and now.
    pub(crate) fn time_sync(
        &self,
        conn: &Connection,
        t0: f64,
        rtt: Option<f64>,
        received: f64,
    ) -> Reply {
        if let Some(rtt) = rtt {
            conn.rtts().record(rtt);
        }
        Reply::Time {
            t0,
            t1: received,
            t2: crate::clock::precise_ms(),
        }
    }
}

fn not_member(room: &RoomId) -> Invalid {
    Invalid::new(ErrorCode::NotMember, format!("not in room {}", room.key))
}

fn not_a_member(member: &MemberId) -> Invalid {
    Invalid::new(
        ErrorCode::NotMember,
        format!("{member} is not a member of the room"),
    )
}
