//! One position kind (playback or scroll): its current record, its durable writes, and the
//! broadcast to its SSE streams.
//!
//! Order: a PUT is stamped (the timestamp strictly increases, so it is the version), then
//! waits its turn for the single writer. The writer stores the newest stamped record (group
//! commit: one fsync can cover several concurrent PUTs), and only then publishes it. So what
//! streams see, what GET returns and what is on disk agree, in version order, and a PUT is
//! acknowledged only once its record (or a newer one) is durable.
//!
//! Broadcast: the newest record, encoded once as an SSE frame, sits in a `watch` channel. Each
//! stream holds a receiver and sends whatever is newest when it can: a slow client skips
//! superseded positions instead of queueing them, so memory per client is constant.

use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use tokio::sync::watch;

use super::record::{Kind, Record, Update};
use super::store::Store;
use crate::clock::now_ms;

/// A published record with its encodings, shared by every stream.
#[derive(Debug)]
pub struct Published {
    pub record: Record,
    /// The record's JSON.
    pub json: Bytes,
    /// `event: <kind>\nid: <timestamp>\ndata: <json>\n\n`
    pub sse: Bytes,
}

impl Published {
    pub fn new(record: Record) -> Arc<Self> {
        let json = record.to_json();
        let mut sse = Vec::with_capacity(json.len() + 48);
        sse.extend_from_slice(b"event: ");
        sse.extend_from_slice(record.kind().event().as_bytes());
        sse.extend_from_slice(b"\nid: ");
        sse.extend_from_slice(record.timestamp().to_string().as_bytes());
        sse.extend_from_slice(b"\ndata: ");
        sse.extend_from_slice(&json);
        sse.extend_from_slice(b"\n\n");
        Arc::new(Published {
            record,
            json: Bytes::from(json),
            sse: Bytes::from(sse),
        })
    }

    pub fn version(&self) -> u64 {
        self.record.timestamp()
    }
}

/// Why a PUT was not stored.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("writing the position failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("the position was lost in a failed write")]
    Lost,
}

#[derive(Debug)]
struct Stamps {
    /// The last timestamp handed out (or seen from elsewhere).
    last: u64,
    /// The newest stamped record not yet written.
    pending: Option<Record>,
    /// The newest version on disk.
    durable: u64,
}

pub struct Channel {
    kind: Kind,
    store: Store,
    stamps: Mutex<Stamps>,
    /// Held by the one writer; PUTs queue on it in stamp order.
    writer: tokio::sync::Mutex<()>,
    latest: watch::Sender<Option<Arc<Published>>>,
}

impl Channel {
    /// A channel starting from the stored record, if any.
    pub fn new(kind: Kind, store: Store, initial: Option<Record>) -> Self {
        let version = initial.as_ref().map_or(0, Record::timestamp);
        Channel {
            kind,
            store,
            stamps: Mutex::new(Stamps {
                last: version,
                pending: None,
                durable: version,
            }),
            writer: tokio::sync::Mutex::new(()),
            latest: watch::Sender::new(initial.map(Published::new)),
        }
    }

    fn stamps(&self) -> MutexGuard<'_, Stamps> {
        self.stamps.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The newest published record.
    pub fn current(&self) -> Option<Arc<Published>> {
        self.latest.borrow().clone()
    }

    /// A receiver for streams: its current value is the newest record.
    pub fn subscribe(&self) -> watch::Receiver<Option<Arc<Published>>> {
        self.latest.subscribe()
    }

    /// Number of open streams on this channel.
    pub fn subscribers(&self) -> usize {
        self.latest.receiver_count()
    }

    /// Stores `update` durably and publishes it. Returns the stored record.
    pub async fn put(&self, update: Update) -> Result<Record, StoreError> {
        let record = {
            let mut stamps = self.stamps();
            // Strictly increasing even when the wall clock stalls or steps back.
            let timestamp = now_ms().max(stamps.last + 1);
            stamps.last = timestamp;
            let record = update.stamp(timestamp);
            stamps.pending = Some(record.clone());
            record
        };
        self.write_through(record.timestamp()).await?;
        Ok(record)
    }

    /// A record from another instance: stored and published if it is newer than anything
    /// here (and later local stamps continue after it). Returns whether it was.
    pub async fn apply(&self, record: Record) -> Result<bool, StoreError> {
        let version = record.timestamp();
        {
            let mut stamps = self.stamps();
            if version <= stamps.last {
                return Ok(false);
            }
            stamps.last = version;
            stamps.pending = Some(record);
        }
        self.write_through(version).await?;
        Ok(true)
    }

    /// Waits for the writer, then makes sure `version` (or a newer record) is durable and
    /// published.
    async fn write_through(&self, version: u64) -> Result<(), StoreError> {
        let _writer = self.writer.lock().await;
        let to_write = {
            let mut stamps = self.stamps();
            if stamps.durable >= version {
                // A write that covered this record (or a newer one) already finished.
                return Ok(());
            }
            match stamps.pending.take() {
                Some(newest) => newest,
                // It was pending when a write failed; that write reported the error to its
                // own caller, and this record went with it.
                None => return Err(StoreError::Lost),
            }
        };
        let published = Published::new(to_write);
        let (store, kind, json) = (self.store.clone(), self.kind, published.json.clone());
        tokio::task::spawn_blocking(move || store.save(kind, &json))
            .await
            .map_err(|e| StoreError::Io(std::io::Error::other(e)))??;
        self.stamps().durable = published.version();
        self.latest.send_replace(Some(published));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::positions::record::parse_update;

    fn update(i: i64) -> Update {
        parse_update(
            Kind::Playback,
            format!(r#"{{"lastPlayedIndex": {i}}}"#).as_bytes(),
            100,
        )
        .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_puts_get_increasing_versions_and_the_newest_wins() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let channel = Arc::new(Channel::new(Kind::Playback, store.clone(), None));
        let mut rx = channel.subscribe();
        let mut tasks = Vec::new();
        for t in 0..8 {
            let channel = channel.clone();
            tasks.push(tokio::spawn(async move {
                let mut versions = Vec::new();
                for i in 0..25 {
                    let r = channel.put(update(t * 100 + i)).await.unwrap();
                    versions.push(r.timestamp());
                }
                versions
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            let v = t.await.unwrap();
            assert!(v.windows(2).all(|w| w[0] < w[1]));
            all.extend(v);
        }
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 200, "versions are unique");
        let newest = channel.current().unwrap();
        assert_eq!(newest.version(), *all.last().unwrap());
        assert_eq!(
            store.load(Kind::Playback).unwrap().as_ref(),
            Some(&newest.record)
        );
        // A subscriber sees the newest record.
        rx.mark_changed();
        assert_eq!(
            rx.borrow_and_update().as_ref().unwrap().version(),
            newest.version()
        );
    }

    #[tokio::test]
    async fn versions_continue_after_the_stored_record() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let far_future = now_ms() + 3_600_000;
        let stored = update(1).stamp(far_future);
        let channel = Channel::new(Kind::Playback, store, Some(stored));
        let r = channel.put(update(2)).await.unwrap();
        assert_eq!(r.timestamp(), far_future + 1);
    }

    #[tokio::test]
    async fn records_from_elsewhere_apply_only_when_newer() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let channel = Channel::new(Kind::Playback, store.clone(), None);
        let mine = channel.put(update(1)).await.unwrap();
        assert!(
            !channel
                .apply(update(2).stamp(mine.timestamp()))
                .await
                .unwrap()
        );
        let theirs = update(3).stamp(mine.timestamp() + 10_000);
        assert!(channel.apply(theirs.clone()).await.unwrap());
        assert_eq!(channel.current().unwrap().record, theirs);
        assert_eq!(store.load(Kind::Playback).unwrap(), Some(theirs.clone()));
        // Local stamps continue after the remote one.
        let next = channel.put(update(4)).await.unwrap();
        assert!(next.timestamp() > theirs.timestamp());
    }

    #[test]
    fn the_sse_frame_carries_event_id_and_data() {
        let p = Published::new(update(5).stamp(1234));
        assert_eq!(
            std::str::from_utf8(&p.sse).unwrap(),
            "event: playback\nid: 1234\ndata: {\"lastPlayedIndex\":5,\"notePath\":\"\",\"noteTitle\":\"\",\"timestamp\":1234,\"deviceId\":\"unknown\"}\n\n"
        );
    }
}
