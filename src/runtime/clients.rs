//! The threads that own momentd's own librdkafka clients (the producers' delivery threads, the
//! population reader), counted while they live, so that `momentd dev` can wait for every one
//! of them to be gone before it stops the in-process cluster they talk to. Nothing else waits:
//! a client's thread ends on its own within its poll interval once it is told to stop, and a
//! `Drop` never blocks on it (it may run on a tokio worker).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

static LIVE: AtomicUsize = AtomicUsize::new(0);

/// Held by a client's thread from before it is spawned until after its client is destroyed.
pub struct Live(());

impl Live {
    pub fn enter() -> Live {
        LIVE.fetch_add(1, Ordering::AcqRel);
        Live(())
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        LIVE.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Waits until every client thread has ended, at most `timeout`; whether they all did.
pub fn wait_all_ended(timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while LIVE.load(Ordering::Acquire) > 0 {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    true
}
