//! A Server-Sent Events client for tests: reqwest over loopback, parsed by the
//! `eventsource-stream` crate.

use std::pin::Pin;

use eventsource_stream::{Event, Eventsource};
use futures_util::{Stream, StreamExt};

use super::PATIENCE;

type Events = Pin<Box<dyn Stream<Item = Result<Event, String>> + Send>>;

pub struct SseClient {
    pub headers: reqwest::header::HeaderMap,
    events: Events,
}

impl SseClient {
    /// Opens `url`, optionally resuming after `last_event_id`.
    pub async fn connect(url: &str, last_event_id: Option<&str>) -> SseClient {
        let mut req = reqwest::Client::new().get(url);
        if let Some(id) = last_event_id {
            req = req.header("Last-Event-ID", id);
        }
        let resp = req.send().await.expect("SSE request failed");
        assert_eq!(resp.status(), 200, "SSE status");
        let headers = resp.headers().clone();
        let events = resp
            .bytes_stream()
            .eventsource()
            .map(|r| r.map_err(|e| e.to_string()))
            .boxed();
        SseClient { headers, events }
    }

    /// The next event; fails the test after [`PATIENCE`].
    pub async fn next(&mut self) -> Event {
        tokio::time::timeout(PATIENCE, self.events.next())
            .await
            .expect("no SSE event in time")
            .expect("SSE stream ended")
            .expect("SSE stream broke")
    }

    /// The next event's data as JSON.
    pub async fn next_json(&mut self) -> (Event, serde_json::Value) {
        let e = self.next().await;
        let v = serde_json::from_str(&e.data).expect("SSE data is not JSON");
        (e, v)
    }
}
