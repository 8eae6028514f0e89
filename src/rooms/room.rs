//! One listening room (pure): its members, its host and who takes over, who may control
//! playback, its access settings and what a wait-for-ready start waits for. Decisions are
//! made here without side effects (`decide_*`) and applied by the callers; the tests of the
//! play-state rules live with [`super::model`].

use std::sync::Arc;

use serde_json::Value;

use super::access::Secret;
use super::model::{Control, Departure, MemberId, PlayState, Refusal, RoomId};
use super::roster::{ControlMode, Member, Role, Roster, Wait};

/// How a room behaves, set when it is created.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Settings {
    /// Starts wait until every present member is ready, or the ready timeout.
    pub wait_for_ready: bool,
    pub control: ControlMode,
    /// Needed to join, stored as a salted hash.
    pub password: Option<Secret>,
    /// The room uses the group features (a name, a `client_id`, a create option): its
    /// `room_users` lists the members. Seed-style rooms keep the seed's `{count}`.
    pub lists_members: bool,
}

/// One listening room.
/// One listening room.
#[derive(Debug, Clone, PartialEq)]
pub struct Room {
    pub id: RoomId,
    /// Creation instant, Unix ms.
    pub created_at: u64,
    pub play: PlayState,
    pub settings: Settings,
    /// The start a wait-for-ready room is waiting to schedule, if any.
    pub wait: Option<Wait>,
    host: MemberId,
    /// Since when (Unix ms) the host has held the role. When rooms that lived apart merge
    /// again, the longest-serving host keeps it.
    host_since: u64,
    /// Members in seniority order, with their roles and presence. With Redis, only the
    /// members connected to this instance.
    members: Roster,
}

/// What a member's `ready` did to a waiting start.
#[derive(Debug, Clone, PartialEq)]
pub enum Readiness {
    /// The room waits for nothing (or not for this member): only the flag changed.
    Noted,
    /// Still waiting for these members.
    Waiting(Vec<MemberId>),
    /// Everyone is ready: the start can be scheduled.
    AllReady,
}

impl Room {
    /// A new room with its creator as host and only member. As in the seed, a new room is
    /// playing from `time`.
    pub fn create(id: RoomId, creator: MemberId, track: Value, time: f64, now_ms: u64) -> Self {
        let mut members = Roster::default();
        members.add(Member::new(creator.clone(), None));
        Room {
            id,
            created_at: now_ms,
            play: PlayState {
                track: Arc::new(track),
                is_playing: true,
                time,
                start_at: now_ms,
                rate: 1.0,
            },
            settings: Settings::default(),
            wait: None,
            host: creator,
            host_since: now_ms,
            members,
        }
    }

    /// A room as the shared state describes it, before any member of this instance joins:
    /// its host may be connected elsewhere.
    pub fn shared(
        id: RoomId,
        created_at: u64,
        host: MemberId,
        host_since: u64,
        play: PlayState,
    ) -> Self {
        Room {
            id,
            created_at,
            play,
            settings: Settings::default(),
            wait: None,
            host,
            host_since,
            members: Roster::default(),
        }
    }

    pub fn with_settings(mut self, settings: Settings) -> Self {
        self.settings = settings;
        self
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn host_id(&self) -> &MemberId {
        &self.host
    }

    pub fn host_since(&self) -> u64 {
        self.host_since
    }

    /// The members' ids in seniority order.
    pub fn members(&self) -> Vec<&MemberId> {
        self.members.ids().collect()
    }

    pub fn roster(&self) -> &Roster {
        &self.members
    }

    pub fn member_mut(&mut self, id: &str) -> Option<&mut Member> {
        self.members.get_mut(id)
    }

    pub fn user_count(&self) -> usize {
        self.members.len()
    }

    pub fn is_member(&self, member: &str) -> bool {
        self.members.contains(member)
    }

    /// Adds a member last in seniority. Returns false if it was already in.
    #[cfg(test)]
    pub fn join(&mut self, member: MemberId) -> bool {
        self.members.add(Member::new(member, None))
    }

    /// Adds a member with its record (a name, or a role kept from elsewhere).
    pub fn join_as(&mut self, member: Member) -> bool {
        self.members.add(member)
    }

    /// Whether `member` may control playback: the host, a co-host, or anyone in a room
    /// where everyone controls.
    pub fn may_control(&self, member: &str) -> bool {
        self.host == member
            || (self.settings.control == ControlMode::Everyone && self.is_member(member))
            || self
                .members
                .get(member)
                .is_some_and(|m| m.role == Role::Cohost)
    }

    /// Decides a departure: when the member was the host, its successor takes over (see
    /// [`Roster::successor`]). Changes nothing.
    pub fn decide_leave(&self, member: &str) -> Departure {
        if !self.is_member(member) {
            return Departure::NotMember;
        }
        match self.members.successor(member) {
            None => Departure::Emptied,
            Some(next) if self.host == member => Departure::Left {
                new_host: Some(next.clone()),
            },
            Some(_) => Departure::Left { new_host: None },
        }
    }

    /// Removes a member at `now_ms` ([`Room::decide_leave`], then the result).
    pub fn leave(&mut self, member: &str, now_ms: u64) -> Departure {
        let departure = self.decide_leave(member);
        self.drop_member(member);
        if let Departure::Left {
            new_host: Some(host),
        } = &departure
        {
            self.set_host(host.clone(), now_ms);
        }
        departure
    }

    /// Removes a member without choosing a new host (the shared state decides that while
    /// Redis is up). Returns whether it was a member.
    pub fn drop_member(&mut self, member: &str) -> bool {
        if let Some(wait) = &mut self.wait {
            wait.release(member);
        }
        self.members.remove(member).is_some()
    }

    /// Sets the host (holding the role since `since`), as decided elsewhere; it need not be a
    /// member here (it may be connected to another instance).
    pub fn set_host(&mut self, host: MemberId, since: u64) {
        self.host = host;
        self.host_since = since;
    }

    /// Makes the room self-sufficient (when this instance must serve alone): if the host is
    /// not among the members, its successor takes over. Returns the new host.
    pub fn localize(&mut self, now_ms: u64) -> Option<MemberId> {
        if self.is_member(&self.host) {
            return None;
        }
        let next = self.members.successor(&self.host)?.clone();
        self.host = next.clone();
        self.host_since = now_ms;
        Some(next)
    }

    /// Decides a host command taking effect at `start_ms`: the play state it leads to. Only
    /// members who may control can change the state (see [`Room::may_control`]). Changes
    /// nothing.
    pub fn decide_control(
        &self,
        sender: &str,
        cmd: Control,
        start_ms: u64,
    ) -> Result<PlayState, Refusal> {
        if !self.may_control(sender) {
            return Err(Refusal::NotHost);
        }
        Ok(self.play.after(cmd, start_ms))
    }

    /// Applies a host command at `now_ms`, effective at once ([`Room::decide_control`],
    /// then the result).
    /// Returns the position the command resolved to (what is broadcast as `current_time`).
    #[cfg(test)]
    pub fn control(&mut self, sender: &str, cmd: Control, now_ms: u64) -> Result<f64, Refusal> {
        self.play = self.decide_control(sender, cmd, now_ms)?;
        Ok(self.play.time)
    }

    /// Decides a hand-over by the host `by` to the member `to` at `now_ms`: the new host and
    /// since when.
    pub fn decide_transfer(
        &self,
        by: &str,
        to: &MemberId,
        now_ms: u64,
    ) -> Result<(MemberId, u64), Refusal> {
        if self.host != by {
            return Err(Refusal::NotHost);
        }
        if !self.is_member(to) {
            return Err(Refusal::NotMember);
        }
        Ok((to.clone(), now_ms))
    }

    /// The host `by` gives `member` a role. Returns whether it changed.
    pub fn set_role(&mut self, by: &str, member: &str, role: Role) -> Result<bool, Refusal> {
        if self.host != by {
            return Err(Refusal::NotHost);
        }
        let target = self.members.get_mut(member).ok_or(Refusal::NotMember)?;
        let changed = target.role != role;
        target.role = role;
        Ok(changed)
    }

    /// The member's connection is gone without it leaving. Returns whether it was present.
    pub fn mark_away(&mut self, member: &str, now_ms: u64) -> bool {
        if let Some(wait) = &mut self.wait {
            wait.release(member);
        }
        match self.members.get_mut(member) {
            Some(m) if m.is_present() => {
                m.away_since = Some(now_ms);
                true
            }
            _ => false,
        }
    }

    /// The member is back. Returns whether it was away.
    pub fn resume(&mut self, member: &str) -> bool {
        match self.members.get_mut(member) {
            Some(m) if !m.is_present() => {
                m.away_since = None;
                true
            }
            _ => false,
        }
    }

    /// A start in a wait-for-ready room: every present member must report ready again,
    /// until `deadline` (Unix ms).
    pub fn begin_wait(&mut self, deadline: u64) -> &Wait {
        self.wait.insert(self.members.begin_wait(deadline))
    }

    /// The member reports whether it is ready to play the current state.
    pub fn set_ready(&mut self, member: &str, ready: bool) -> Result<Readiness, Refusal> {
        let m = self.members.get_mut(member).ok_or(Refusal::NotMember)?;
        m.ready = ready;
        let Some(wait) = &mut self.wait else {
            return Ok(Readiness::Noted);
        };
        if !ready || !wait.waiting_for.iter().any(|w| w == member) {
            return Ok(Readiness::Noted);
        }
        if wait.release(member) {
            self.wait = None;
            Ok(Readiness::AllReady)
        } else {
            Ok(Readiness::Waiting(wait.waiting_for.clone()))
        }
    }

    /// Ends a wait whose deadline passed at `now_ms` (or that nobody is left to wait for).
    /// Returns whether it ended.
    pub fn end_wait(&mut self, now_ms: u64) -> bool {
        let over = self
            .wait
            .as_ref()
            .is_some_and(|w| now_ms >= w.deadline || w.waiting_for.is_empty());
        if over {
            self.wait = None;
        }
        over
    }

    /// Takes the state parts of a decided change (host and play state; membership of this
    /// instance's members is kept by `join` and `drop_member`).
    pub fn absorb(&mut self, change: &super::model::Change) {
        if let Some((host, since)) = &change.host {
            self.set_host(host.clone(), *since);
        }
        if let Some(play) = &change.play {
            self.play = play.clone();
        }
    }
}
