//! Who is in a room and what each may do (pure): the members in seniority order with their
//! name, role, presence and readiness; who takes over from a departing host; who may
//! control playback; and what a wait-for-ready start is waiting for.
//!
//! Seniority is join order, kept across a resume: a member that drops and comes back within
//! the grace period keeps its place, its role and its host role. Away members are members:
//! they count, they keep their role, but they are not waited for and they are the last
//! choice at a handover.

use std::sync::Arc;

use serde::Serialize;

use super::access::ClientKey;
use super::ids::MemberId;

/// Longest display name, in characters.
pub const MAX_NAME_CHARS: usize = 64;
/// Largest room whose member list is sent (`room_users.members`, `room_joined.members`): a
/// list goes to every member on every join, so beyond this only counts are sent.
pub const MAX_LISTED: usize = 100;

/// What a member may do besides listening. The host is the room's own field, not a role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Role {
    #[default]
    Member,
    /// May control playback, and is first in line when the host leaves.
    Cohost,
}

/// Who may control playback.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ControlMode {
    /// The host and the co-hosts (the seed's behaviour, with co-hosts added).
    #[default]
    Host,
    /// Every member.
    Everyone,
}

/// A member's part in a room.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    pub id: MemberId,
    /// Display name, at most [`MAX_NAME_CHARS`] characters.
    pub name: Option<Arc<str>>,
    pub role: Role,
    /// Since when (Unix ms) its connection has been gone without it leaving.
    pub away_since: Option<u64>,
    /// Ready to play the room's current state (wait-for-ready rooms).
    pub ready: bool,
    /// The key of the member's `client_id`, if its client sent one (it may resume).
    pub client: Option<ClientKey>,
}

impl Member {
    pub fn new(id: MemberId, name: Option<Arc<str>>) -> Self {
        Member {
            id,
            name,
            role: Role::Member,
            away_since: None,
            ready: false,
            client: None,
        }
    }

    pub fn is_present(&self) -> bool {
        self.away_since.is_none()
    }
}

/// A member as clients see it, in `room_users.members`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MemberView {
    pub member_id: MemberId,
    pub name: Option<Arc<str>>,
    /// `host`, `cohost` or `member`.
    pub role: &'static str,
    pub away: bool,
    pub ready: bool,
}

/// A start in a wait-for-ready room that waits for members to be ready.
#[derive(Debug, Clone, PartialEq)]
pub struct Wait {
    /// The present members the start still waits for.
    pub waiting_for: Vec<MemberId>,
    /// When the start goes ahead without them (Unix ms).
    pub deadline: u64,
}

/// The members of a room, in seniority order (the first has been present longest).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Roster {
    members: Vec<Member>,
}

impl Roster {
    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Member> {
        self.members.iter()
    }

    pub fn ids(&self) -> impl Iterator<Item = &MemberId> {
        self.members.iter().map(|m| &m.id)
    }

    pub fn get(&self, id: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.id == id)
    }

    pub fn get_mut(&mut self, id: &str) -> Option<&mut Member> {
        self.members.iter_mut().find(|m| m.id == id)
    }

    pub fn contains(&self, id: &str) -> bool {
        self.get(id).is_some()
    }

    /// Adds a member last in seniority. Returns false if it was already in.
    pub fn add(&mut self, member: Member) -> bool {
        if self.contains(&member.id) {
            return false;
        }
        self.members.push(member);
        true
    }

    pub fn remove(&mut self, id: &str) -> Option<Member> {
        let index = self.members.iter().position(|m| m.id == id)?;
        Some(self.members.remove(index))
    }

    /// Who takes over from `leaving` (the host): a present co-host, else a present member,
    /// else an away co-host, else an away member; the longest present of each kind.
    pub fn successor(&self, leaving: &str) -> Option<&MemberId> {
        let rank = |m: &Member| (!m.is_present(), m.role != Role::Cohost);
        self.members
            .iter()
            .filter(|m| m.id != leaving)
            .enumerate()
            .min_by_key(|(seniority, m)| (rank(m), *seniority))
            .map(|(_, m)| &m.id)
    }

    /// Members away longer than `grace_ms` at `now_ms`.
    #[cfg(test)]
    pub fn expired(&self, now_ms: u64, grace_ms: u64) -> Vec<MemberId> {
        self.members
            .iter()
            .filter(|m| m.away_since.is_some_and(|since| now_ms >= since + grace_ms))
            .map(|m| m.id.clone())
            .collect()
    }

    /// A new start: every present member must report ready again. Returns what the start
    /// waits for, until `deadline`.
    pub fn begin_wait(&mut self, deadline: u64) -> Wait {
        for m in &mut self.members {
            m.ready = false;
        }
        Wait {
            waiting_for: self
                .members
                .iter()
                .filter(|m| m.is_present())
                .map(|m| m.id.clone())
                .collect(),
            deadline,
        }
    }

    /// The roster as clients see it, with `host` named.
    pub fn views(&self, host: &str) -> Vec<MemberView> {
        self.members
            .iter()
            .map(|m| MemberView {
                member_id: m.id.clone(),
                name: m.name.clone(),
                role: match m.role {
                    _ if m.id == host => "host",
                    Role::Cohost => "cohost",
                    Role::Member => "member",
                },
                away: !m.is_present(),
                ready: m.ready,
            })
            .collect()
    }
}

impl Wait {
    /// `member` is ready (or gone): it is no longer waited for. Returns whether the wait is
    /// over.
    pub fn release(&mut self, member: &str) -> bool {
        self.waiting_for.retain(|m| m != member);
        self.waiting_for.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roster(ids: &[&str]) -> Roster {
        let mut r = Roster::default();
        for id in ids {
            assert!(r.add(Member::new((*id).into(), None)));
        }
        r
    }

    #[test]
    fn the_longest_present_cohost_then_member_takes_over() {
        let mut r = roster(&["host", "a", "b", "c"]);
        assert_eq!(r.successor("host").map(|m| m.as_str()), Some("a"));
        r.get_mut("c").unwrap().role = Role::Cohost;
        r.get_mut("b").unwrap().role = Role::Cohost;
        assert_eq!(r.successor("host").map(|m| m.as_str()), Some("b"));
        // An away co-host comes after every present member.
        r.get_mut("b").unwrap().away_since = Some(5);
        r.get_mut("c").unwrap().away_since = Some(5);
        assert_eq!(r.successor("host").map(|m| m.as_str()), Some("a"));
        r.get_mut("a").unwrap().away_since = Some(5);
        assert_eq!(r.successor("host").map(|m| m.as_str()), Some("b"));
        assert_eq!(roster(&["alone"]).successor("alone"), None);
    }

    #[test]
    fn members_keep_their_place_and_expire_after_the_grace() {
        let mut r = roster(&["a", "b"]);
        assert!(!r.add(Member::new("a".into(), None)), "no duplicates");
        r.get_mut("a").unwrap().away_since = Some(1_000);
        assert!(r.expired(15_999, 15_000).is_empty());
        assert_eq!(r.expired(16_000, 15_000), vec![MemberId::from("a")]);
        assert_eq!(r.ids().next().map(|m| m.as_str()), Some("a"));
        assert!(r.remove("a").is_some());
        assert!(r.remove("a").is_none());
        assert_eq!(r.len(), 1);
    }

    #[test]
    fn a_wait_covers_the_present_members_until_each_is_ready() {
        let mut r = roster(&["a", "b", "c"]);
        r.get_mut("b").unwrap().ready = true;
        r.get_mut("c").unwrap().away_since = Some(1);
        let mut wait = r.begin_wait(9_000);
        assert!(r.iter().all(|m| !m.ready), "every member is unready again");
        assert_eq!(wait.waiting_for, vec![MemberId::from("a"), "b".into()]);
        assert!(!wait.release("a"));
        assert!(!wait.release("zz"));
        assert!(wait.release("b"));
    }

    #[test]
    fn views_name_the_host() {
        let mut r = roster(&["h", "co", "m"]);
        r.get_mut("co").unwrap().role = Role::Cohost;
        r.get_mut("m").unwrap().away_since = Some(3);
        let roles: Vec<_> = r.views("h").iter().map(|v| (v.role, v.away)).collect();
        assert_eq!(
            roles,
            [("host", false), ("cohost", false), ("member", true)]
        );
    }
}
