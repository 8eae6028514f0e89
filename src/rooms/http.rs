//! The seed-1 HTTP API (`GET /` server status, `GET /rooms`, `GET /room/{id}`), the room
//! lookups behind it, and the sweep that deletes rooms left empty (run by
//! [`super::housekeeping`]). A password-protected room shows its member count only.

use std::sync::Arc;

use axum::extract::{FromRef, Path, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use serde_json::json;

use super::Rooms;
use super::shared;
use super::views::HttpRoom;
use crate::clock::{now_ms, rfc3339_ms};
use crate::error::ApiError;

/// The routes, for any router state that can hand out the rooms.
pub(crate) fn router<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Arc<Rooms>: FromRef<S>,
{
    Router::new()
        .route("/", get(status))
        .route("/rooms", get(list_rooms))
        .route("/room/{id}", get(room))
}

async fn status(State(rooms): State<Arc<Rooms>>) -> Json<serde_json::Value> {
    Json(json!({
        "status": "ok",
        "message": "playsync is running",
        "rooms": rooms.count().await,
        "timestamp": rfc3339_ms(now_ms()),
    }))
}

#[derive(Serialize)]
struct RoomList {
    count: usize,
    rooms: Vec<HttpRoom>,
}

async fn list_rooms(State(rooms): State<Arc<Rooms>>) -> Json<RoomList> {
    let rooms = rooms.list().await;
    Json(RoomList {
        count: rooms.len(),
        rooms,
    })
}

async fn room(
    State(rooms): State<Arc<Rooms>>,
    Path(id): Path<String>,
) -> Result<Json<HttpRoom>, ApiError> {
    rooms
        .info(&id)
        .await
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("room {id} does not exist")))
}

impl Rooms {
    /// Number of live rooms (across instances while Redis is up).
    pub(crate) async fn count(&self) -> usize {
        if let Some(bp) = self.shared()
            && let Ok(n) = shared::count(bp).await
        {
            return n;
        }
        self.registry.len()
    }

    /// The seed's room object for HTTP.
    async fn info(&self, key: &str) -> Option<HttpRoom> {
        let now = now_ms();
        if let Some(Ok(found)) = self.read_shared(key).await {
            return found.map(|f| f.parts().for_http(now));
        }
        let slot = self.registry.slot(key)?;
        let guard = slot.lock().await;
        guard.as_ref().map(|e| e.parts().for_http(now))
    }

    /// Every live room, as [`Rooms::info`].
    async fn list(&self) -> Vec<HttpRoom> {
        let now = now_ms();
        if let Some(bp) = self.shared()
            && let Ok(facts) = shared::list(bp).await
        {
            return facts.iter().map(|f| f.parts().for_http(now)).collect();
        }
        let mut rooms = Vec::new();
        for (_, slot) in self.registry.slots() {
            if let Some(e) = slot.lock().await.as_ref() {
                rooms.push(e.parts().for_http(now));
            }
        }
        rooms
    }

    /// Deletes rooms left without members. Rooms are deleted when their last member leaves,
    /// so this only catches what slipped through; returns how many it removed.
    pub(super) async fn sweep(&self) -> usize {
        let mut removed = 0;
        for (key, slot) in self.registry.slots() {
            let mut guard = slot.lock().await;
            if guard.as_ref().is_none_or(|e| e.room.user_count() == 0) {
                self.registry.delete(&key, &slot, &mut guard);
                removed += 1;
                tracing::info!(room = %key, "room deleted by the sweep: it was empty");
            }
        }
        removed
    }
}
