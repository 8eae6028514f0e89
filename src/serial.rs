//! [`SerialQueue`]: runs async jobs strictly one after another, in submission order,
//! without a task of its own.
//!
//! socketioxide spawns a task per incoming event, so two events from one socket can run
//! concurrently and in either order. Handlers submit their work here synchronously (in the
//! order the socket delivered the events); whichever submitter finds the queue idle becomes
//! the runner and drains it. An idle queue costs one small allocation and no task.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use futures_util::FutureExt;
use futures_util::future::BoxFuture;

#[derive(Default)]
pub struct SerialQueue {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    jobs: VecDeque<BoxFuture<'static, ()>>,
    running: bool,
}

impl SerialQueue {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Queues `job` now; the returned future must be polled (spawned) for the queue to make
    /// progress. It completes when this submitter's share of the draining is done.
    pub fn submit(
        self: &Arc<Self>,
        job: BoxFuture<'static, ()>,
    ) -> impl Future<Output = ()> + Send + 'static + use<> {
        let start = {
            let mut state = self.lock();
            state.jobs.push_back(job);
            !std::mem::replace(&mut state.running, true)
        };
        let queue = self.clone();
        async move {
            if start {
                queue.drain().await;
            }
        }
    }

    async fn drain(&self) {
        /// Hands the queue back if the runner is dropped mid-job (runtime shutdown), so later
        /// submitters are not stuck behind a runner that no longer exists.
        struct Release<'a>(&'a SerialQueue);
        impl Drop for Release<'_> {
            fn drop(&mut self) {
                self.0.lock().running = false;
            }
        }
        let release = Release(self);
        loop {
            let job = {
                let mut state = self.lock();
                match state.jobs.pop_front() {
                    Some(job) => job,
                    None => {
                        // Seen empty and released under one lock, so a concurrent submitter
                        // either lands before (and is drained) or after (and runs itself).
                        state.running = false;
                        drop(state);
                        std::mem::forget(release);
                        return;
                    }
                }
            };
            // A panicking job must not take the queue down with it.
            if std::panic::AssertUnwindSafe(job)
                .catch_unwind()
                .await
                .is_err()
            {
                tracing::error!("a queued job panicked; continuing with the next one");
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is a plain queue and a flag; a poisoned lock still holds valid data.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn jobs_run_in_submission_order_even_when_spawned_concurrently() {
        let queue = SerialQueue::new();
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut handles = Vec::new();
        for i in 0..200u64 {
            let log = log.clone();
            // Later jobs are quicker, so any reordering would show.
            let job = async move {
                tokio::time::sleep(Duration::from_micros(200 - i)).await;
                log.lock().unwrap().push(i);
            }
            .boxed();
            handles.push(tokio::spawn(queue.submit(job)));
        }
        for h in handles {
            h.await.unwrap();
        }
        assert_eq!(*log.lock().unwrap(), (0..200).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn a_panicking_job_does_not_wedge_the_queue() {
        let queue = SerialQueue::new();
        let ran = Arc::new(Mutex::new(false));
        queue.submit(async { panic!("boom") }.boxed()).await;
        let r = ran.clone();
        queue
            .submit(async move { *r.lock().unwrap() = true }.boxed())
            .await;
        assert!(*ran.lock().unwrap());
    }

    #[tokio::test]
    async fn a_dropped_runner_releases_the_queue() {
        let queue = SerialQueue::new();
        let runner = queue.submit(std::future::pending().boxed());
        let mut runner = Box::pin(runner);
        // Poll once so the runner starts the pending job, then drop it.
        assert!(futures_util::poll!(&mut runner).is_pending());
        drop(runner);
        let ran = Arc::new(Mutex::new(false));
        let r = ran.clone();
        queue
            .submit(async move { *r.lock().unwrap() = true }.boxed())
            .await;
        assert!(*ran.lock().unwrap());
    }
}
