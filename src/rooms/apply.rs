//! The one `apply`: a decided [`Change`] becomes the room's state and the events its members
//! get, whoever decided it (the model here, a Redis script here or on another instance).
//!
//! - a new host gets `become_host` (if it is connected here) and the room `host_changed`;
//! - a new member count, or a changed member list, goes to every member as `room_users`
//!   (with the list in rooms that use the group features, see [`super::views::Users`]);
//! - a host command's new state is relayed as the command's own event to every member but
//!   its sender; any other new play state goes out as `sync_state`;
//! - a start that waits for members to be ready announces whom it waits for (`waiting`).
//!
//! Runs under the room's lock, so members see changes in the order they were applied. Each
//! event is encoded once, whatever the number of recipients.

use super::Rooms;
use super::model::{Cause, Change, RosterChange};
use super::protocol::ServerEvent;
use super::registry::Entry;
use super::views::{BecomeHost, CommandEvent, HostChanged, Users, Waiting};
use crate::clock::now_ms;

impl Rooms {
    /// Applies `change` to `entry` and tells this instance's members what changed.
    pub(super) fn apply(&self, entry: &mut Entry, change: &Change) {
        entry.room.absorb(change);
        if let Some(count) = change.count {
            entry.count = count;
        }
        let room_id = &entry.room.id.raw;
        if let Some((host, _)) = &change.host {
            tracing::info!(room = %entry.room.id.key, %host, "host handed over");
            entry.send_to(host, ServerEvent::BecomeHost, &BecomeHost { room_id });
            let changed = HostChanged {
                room_id,
                host_id: host,
            };
            entry.broadcast(None, ServerEvent::HostChanged, &changed);
        }
        if change.count.is_some() || change.roster != RosterChange::Unchanged {
            let members = match &change.roster {
                RosterChange::Listed(list) => list.clone(),
                RosterChange::Local | RosterChange::Unchanged => entry.listed_members(),
            };
            let users = Users {
                count: entry.count,
                members: members.filter(|_| entry.room.settings.lists_members),
            };
            entry.broadcast(None, ServerEvent::RoomUsers, &users);
        }
        if let Some(play) = &change.play {
            match &change.cause {
                Cause::Command { kind, by } => {
                    tracing::trace!(room = %entry.room.id.key, event = kind.event(), time = play.time, "host command");
                    entry.broadcast(
                        Some(by),
                        ServerEvent::Command(*kind),
                        &CommandEvent::of(*kind, play, now_ms()),
                    );
                }
                Cause::Membership | Cause::Resync => {
                    entry.broadcast(None, ServerEvent::SyncState, &play.snapshot(now_ms()));
                }
            }
        }
        if let Some(members) = change.waiting.as_ref().filter(|m| !m.is_empty()) {
            entry.broadcast(None, ServerEvent::Waiting, &Waiting { room_id, members });
        }
    }
}
