//! The seed-1 HTTP API: `GET /` (server status), `GET /rooms`, `GET /room/{id}`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::clock::{now_ms, rfc3339_ms};
use crate::server::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(status))
        .route("/rooms", get(list_rooms))
        .route("/room/{id}", get(room))
}

async fn status(State(app): State<AppState>) -> Json<serde_json::Value> {
    Json(json!({
        "status": "ok",
        "message": "playsync is running",
        "rooms": app.rooms.count().await,
        "timestamp": rfc3339_ms(now_ms()),
    }))
}

async fn list_rooms(State(app): State<AppState>) -> Json<serde_json::Value> {
    let rooms = app.rooms.list().await;
    Json(json!({"count": rooms.len(), "rooms": rooms}))
}

async fn room(State(app): State<AppState>, Path(id): Path<String>) -> Response {
    match app.rooms.info(&id).await {
        Some(info) => Json(info).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({"error": format!("room {id} does not exist")})),
        )
            .into_response(),
    }
}
