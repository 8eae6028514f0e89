//! The one `apply`: a decided [`Change`] becomes the room's state and the events its members
//! get, whoever decided it (the model here, a Redis script here or on another instance).
//!
//! - a new host that is connected here gets `become_host`;
//! - a new member count goes to every member as `room_users`;
//! - a host command's new state is relayed as the command's own event to every member but
//!   its sender; any other new play state goes out as `sync_state`.
//!
//! Runs under the room's lock, so members see changes in the order they were applied.

use super::Rooms;
use super::model::{Cause, Change};
use super::protocol::ServerEvent;
use super::registry::Entry;
use super::views::{BecomeHost, CommandEvent, Users};
use crate::clock::now_ms;

impl Rooms {
    /// Applies `change` to `entry` and tells this instance's members what changed.
    pub(super) fn apply(&self, entry: &mut Entry, change: &Change) {
        entry.room.absorb(change);
        if let Some(count) = change.count {
            entry.count = count;
        }
        let key = &entry.room.id.key;
        if let Some((host, _)) = &change.host
            && entry.room.is_member(host)
        {
            tracing::info!(room = %key, %host, "host handed over");
            self.out.to_member(
                host,
                ServerEvent::BecomeHost,
                &BecomeHost {
                    room_id: &entry.room.id.raw,
                },
            );
        }
        if let Some(count) = change.count {
            self.out
                .to_room(key, None, ServerEvent::RoomUsers, &Users { count });
        }
        let Some(play) = &change.play else {
            return;
        };
        match &change.cause {
            Cause::Command { kind, by } => {
                tracing::trace!(room = %key, event = kind.event(), time = play.time, "host command");
                self.out.to_room(
                    key,
                    Some(by),
                    ServerEvent::Command(*kind),
                    &CommandEvent::of(*kind, play, now_ms()),
                );
            }
            Cause::Membership | Cause::Resync => {
                self.out
                    .to_room(key, None, ServerEvent::SyncState, &play.snapshot(now_ms()));
            }
        }
    }
}
