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

    /// Opens `url` with extra request headers; a refusal gives its status, headers and JSON.
    pub async fn connect_with(
        url: &str,
        headers: &[(&str, &str)],
    ) -> Result<SseClient, (u16, reqwest::header::HeaderMap, serde_json::Value)> {
        let mut req = reqwest::Client::new().get(url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await.expect("SSE request failed");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        if status != 200 {
            let body = resp.json().await.expect("refusal is not JSON");
            return Err((status, headers, body));
        }
        let events = resp
            .bytes_stream()
            .eventsource()
            .map(|r| r.map_err(|e| e.to_string()))
            .boxed();
        Ok(SseClient { headers, events })
    }

    /// Waits up to `within` for the server to end the stream, skipping events; returns
    /// whether it ended.
    pub async fn ends_within(&mut self, within: std::time::Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, self.events.next()).await {
                Err(_) => return false,
                Ok(None) | Ok(Some(Err(_))) => return true,
                Ok(Some(Ok(_))) => continue,
            }
        }
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
