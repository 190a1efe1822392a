//! A partition's own librdkafka queue, read by the partition's task.
//!
//! By default librdkafka forwards every assigned partition's fetched messages into the
//! consumer's one queue, which a single thread then polls message by message (rust-rdkafka's
//! `poll` costs a lock, a clock read and an event dispatch per message) and copies out to the
//! tasks. Instead each partition's fetch queue is split off before the partition is assigned
//! (`rd_kafka_queue_forward(q, NULL)` marks the forwarding as the application's, so starting the
//! fetch does not forward it back), and its task takes its messages in batches
//! (`rd_kafka_consume_batch_queue`: one call for up to a batch, outdated messages of an earlier
//! assignment filtered by librdkafka's version barrier) and decodes them where librdkafka put
//! them — no copy, no hand-off, and the work spreads over the tokio workers.
//!
//! The queue wakes its task through a callback librdkafka runs (on its broker thread, under the
//! queue's lock) when the queue goes from empty to non-empty.
//!
//! This is the one place the runtime calls librdkafka's C API directly; everything here is
//! what rust-rdkafka's `PartitionQueue` does, plus the batch read it lacks.

use std::ffi::{c_void, CString};
use std::sync::Arc;

use rdkafka::bindings as rd;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use tokio::sync::Notify;

/// What wakes a partition task: `notify_one` keeps a permit when the task is not waiting, so
/// a wake-up between its last empty read and its next wait is not lost.
pub type Waker = Arc<Notify>;

/// A partition's fetch queue, split off the consumer's queue. Keeps the consumer alive (a queue
/// must not outlive its client).
pub struct SplitQueue<C: ConsumerContext + 'static> {
    ptr: *mut rd::rd_kafka_queue_t,
    _consumer: Arc<BaseConsumer<C>>,
}

// SAFETY: librdkafka's queues are thread-safe (every operation takes the queue's lock); the
// pointer is owned by this value and released once, in `drop`.
unsafe impl<C: ConsumerContext + 'static> Send for SplitQueue<C> {}

unsafe extern "C" fn wake(_rk: *mut rd::rd_kafka_t, opaque: *mut c_void) {
    // SAFETY: `opaque` is a `Notify` that outlives the client (the contract of `split`).
    let notify = unsafe { &*(opaque as *const Notify) };
    notify.notify_one();
}

impl<C: ConsumerContext + 'static> SplitQueue<C> {
    /// Splits the partition's queue off the consumer's queue (call it before the partition is
    /// assigned, so no message of it is forwarded to the consumer's queue), and has librdkafka
    /// notify `waker` whenever the queue goes from empty to non-empty. `None` if librdkafka
    /// refuses (an unusable topic name).
    ///
    /// The callback belongs to the partition's queue inside librdkafka, not to this handle: it
    /// stays after the handle is dropped (a later split of the same partition replaces it), so
    /// one partition's tasks, old and new, never unset each other's.
    ///
    /// # Safety
    ///
    /// `waker` must stay alive until the consumer's client is destroyed: momentd keeps one per
    /// partition in the consumer's context, which is dropped after the client.
    pub unsafe fn split(
        consumer: &Arc<BaseConsumer<C>>,
        topic: &str,
        partition: i32,
        waker: &Notify,
    ) -> Option<Self> {
        let topic = CString::new(topic).ok()?;
        let rk = consumer.client().native_ptr();
        // SAFETY: `rk` is a live consumer handle (the Arc keeps it so) and `topic` a C string.
        let ptr = unsafe { rd::rd_kafka_queue_get_partition(rk, topic.as_ptr(), partition) };
        if ptr.is_null() {
            return None;
        }
        // SAFETY: `ptr` is the queue just obtained; the waker outlives the client (above).
        unsafe {
            rd::rd_kafka_queue_forward(ptr, std::ptr::null_mut());
            rd::rd_kafka_queue_cb_event_enable(
                ptr,
                Some(wake),
                waker as *const Notify as *mut c_void,
            );
        }
        Some(SplitQueue {
            ptr,
            _consumer: Arc::clone(consumer),
        })
    }

    /// Takes up to `max` messages without waiting (none if the queue is empty) into `into`,
    /// which must be empty.
    pub fn take(&self, into: &mut Fetched, max: usize) {
        debug_assert!(into.msgs.is_empty());
        into.msgs.reserve(max);
        // SAFETY: the buffer has room for `max` pointers; librdkafka writes `n` of them, each a
        // message the caller now owns (destroyed by `Fetched`).
        let n =
            unsafe { rd::rd_kafka_consume_batch_queue(self.ptr, 0, into.msgs.as_mut_ptr(), max) };
        if n > 0 {
            // SAFETY: librdkafka initialized the first `n` (≤ max ≤ capacity) entries.
            unsafe { into.msgs.set_len(n as usize) };
        }
    }
}

/// The low and high watermarks of a partition as the consumer's last fetch of it reported
/// them (librdkafka's cache: no request). `None` until a fetch has reported them.
pub fn cached_watermarks<C: ConsumerContext + 'static>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    partition: i32,
) -> Option<(i64, i64)> {
    let topic = CString::new(topic).ok()?;
    let (mut low, mut high) = (-1i64, -1i64);
    // SAFETY: a live client handle, a C string, and two out-parameters.
    let err = unsafe {
        rd::rd_kafka_get_watermark_offsets(
            consumer.client().native_ptr(),
            topic.as_ptr(),
            partition,
            &mut low,
            &mut high,
        )
    };
    (err == rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR && high >= 0).then_some((low, high))
}

impl<C: ConsumerContext + 'static> Drop for SplitQueue<C> {
    fn drop(&mut self) {
        // SAFETY: the handle is destroyed once; the partition's fetch queue itself belongs to
        // librdkafka.
        unsafe { rd::rd_kafka_queue_destroy(self.ptr) };
    }
}

/// Messages taken from a split queue; each is handed back to librdkafka (its fetch buffer
/// released) when the batch is cleared or dropped.
#[derive(Default)]
pub struct Fetched {
    msgs: Vec<*mut rd::rd_kafka_message_t>,
}

// SAFETY: the messages are owned by this value; librdkafka's messages may be read and destroyed
// on any thread.
unsafe impl Send for Fetched {}

/// A message as a partition task processes it, its bytes borrowed from wherever they are (a
/// fetched batch here, or a batch the consumer thread polled).
#[derive(Debug, Clone, Copy)]
pub struct Msg<'a> {
    pub offset: i64,
    pub key: Option<&'a [u8]>,
    pub payload: Option<&'a [u8]>,
    pub content_type: Option<&'a [u8]>,
}

/// One fetched message, or the error librdkafka delivered in the partition's queue instead of
/// one (an offset reset, a broker error): not input, nothing to commit.
pub type Fetch<'a> = Result<Msg<'a>, String>;

fn bytes<'a>(p: *const c_void, len: usize) -> Option<&'a [u8]> {
    // SAFETY (for callers): `p` points at `len` bytes owned by a message that outlives 'a.
    (!p.is_null()).then(|| unsafe { std::slice::from_raw_parts(p as *const u8, len) })
}

impl Fetched {
    pub fn is_empty(&self) -> bool {
        self.msgs.is_empty()
    }

    pub fn len(&self) -> usize {
        self.msgs.len()
    }

    /// The messages, in the order the queue held them (offset order).
    ///
    /// A partition's prefetched messages wait in its queue long enough to leave the CPU's
    /// caches (up to a few MiB a partition), so each one's first touch is a trip to memory:
    /// reading them one by one stalls on every message. So the messages a few places ahead are
    /// requested early — their records at twice the distance, their bytes (value, then the
    /// headers after it) once their record is in — and the misses overlap.
    pub fn iter(&self) -> impl Iterator<Item = Fetch<'_>> + '_ {
        const AHEAD: usize = 8;
        const RECORD: usize = 256;
        let hint_record = |i: usize| {
            if let Some(&m) = self.msgs.get(i) {
                crate::index::prefetch_lines(m as *const u8, RECORD);
            }
        };
        let hint_bytes = |i: usize| {
            if let Some(&m) = self.msgs.get(i) {
                // SAFETY: a live message of this batch (see below).
                let msg = unsafe { &*m };
                if !msg.payload.is_null() {
                    // The value, and the headers that follow it in the fetched record.
                    let len = (msg.len + 64).min(1024);
                    crate::index::prefetch_lines(msg.payload as *const u8, len);
                }
            }
        };
        (0..2 * AHEAD).for_each(hint_record);
        (0..AHEAD).for_each(hint_bytes);
        self.msgs.iter().enumerate().map(move |(i, &m)| {
            hint_record(i + 2 * AHEAD);
            hint_bytes(i + AHEAD);
            // SAFETY: `m` is a live message owned by this batch (destroyed only in `clear`,
            // which needs `&mut self`, so not while these borrows live).
            let msg = unsafe { &*m };
            if msg.err != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
                // SAFETY: for an error, librdkafka's message string is in the payload.
                let text = unsafe {
                    std::ffi::CStr::from_ptr(rd::rd_kafka_err2str(msg.err)).to_string_lossy()
                };
                let detail = bytes(msg.payload, msg.len)
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                    .unwrap_or_default();
                return Err(format!("{text}: {detail}"));
            }
            Ok(Msg {
                offset: msg.offset,
                key: bytes(msg.key, msg.key_len),
                payload: bytes(msg.payload, msg.len),
                content_type: content_type(m),
            })
        })
    }

    /// Hands the messages back to librdkafka, keeping the buffer's room.
    pub fn clear(&mut self) {
        for m in self.msgs.drain(..) {
            // SAFETY: each message is owned by this batch and destroyed once.
            unsafe { rd::rd_kafka_message_destroy(m) };
        }
    }
}

/// Fetched messages with their views made once: what the population barrier holds back, or a
/// merge buffers, is read again later, and reading a fetched message again is not free
/// (librdkafka parses a message's headers at each read when it has none, allocating a reader),
/// nor is copying it out (about half of all input is held back once in a backlog).
pub struct Viewed {
    /// Borrowed from `_msgs` (the lifetime is this value's: see `views`). Declared first, so
    /// dropped before the messages.
    views: Vec<Msg<'static>>,
    /// Owns the messages (destroyed when this value drops).
    _msgs: Fetched,
}

impl Viewed {
    /// Takes the messages of `from` (leaving it empty, its buffer's room kept); each error
    /// librdkafka put in the queue in place of a message goes to `error` (not input: nothing
    /// to process or commit).
    pub fn take(from: &mut Fetched, mut error: impl FnMut(String)) -> Viewed {
        let room = Vec::with_capacity(from.msgs.capacity());
        let msgs = Fetched {
            msgs: std::mem::replace(&mut from.msgs, room),
        };
        let views: Vec<Msg<'_>> = msgs
            .iter()
            .filter_map(|f| f.map_err(&mut error).ok())
            .collect();
        // SAFETY: the views point into messages librdkafka allocated (their records, values,
        // keys and parsed headers), which stay where they are until destroyed — moving `msgs`
        // moves only the pointers to them — and they are destroyed only when this value
        // drops, after `views` (declaration order). `views` hands them out no longer than
        // `&self`.
        let views = unsafe { std::mem::transmute::<Vec<Msg<'_>>, Vec<Msg<'static>>>(views) };
        Viewed { views, _msgs: msgs }
    }

    /// The messages, in offset order.
    pub fn views(&self) -> &[Msg<'_>] {
        &self.views
    }
}

impl Drop for Fetched {
    fn drop(&mut self) {
        self.clear();
    }
}

/// The value of the message's `content-type` header (name compared without case), if any.
fn content_type<'a>(m: *mut rd::rd_kafka_message_t) -> Option<&'a [u8]> {
    let mut hdrs: *mut rd::rd_kafka_headers_t = std::ptr::null_mut();
    // SAFETY: `m` is a live message; the headers it returns belong to it (parsed once, freed
    // with it).
    let err = unsafe { rd::rd_kafka_message_headers(m, &mut hdrs) };
    if err != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR || hdrs.is_null() {
        return None;
    }
    let mut idx = 0;
    loop {
        let mut name: *const std::ffi::c_char = std::ptr::null();
        let mut value: *const c_void = std::ptr::null();
        let mut size = 0usize;
        // SAFETY: `hdrs` belongs to the live message; out of range gives an error.
        let err =
            unsafe { rd::rd_kafka_header_get_all(hdrs, idx, &mut name, &mut value, &mut size) };
        if err != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR || name.is_null() {
            return None;
        }
        // SAFETY: header names are NUL-terminated strings owned by the headers.
        let n = unsafe { std::ffi::CStr::from_ptr(name) };
        if n.to_bytes().eq_ignore_ascii_case(b"content-type") {
            return bytes(value, size);
        }
        idx += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::consumer::BaseConsumer;
    use rdkafka::message::{Header, Message, OwnedHeaders};
    use rdkafka::mocking::MockCluster;
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    use rdkafka::{ClientConfig, Offset, TopicPartitionList};
    use std::time::{Duration, Instant};

    /// A partition split off before its assignment is read only through its own queue, whole,
    /// in offset order, in batches of at most the size asked for, with its `content-type`
    /// header (any case); its reader is woken when messages arrive; the other partition still
    /// comes through the consumer's queue.
    #[test]
    fn a_split_partition_is_read_from_its_own_queue_in_order_and_wakes_its_reader() {
        let cluster = MockCluster::new(1).expect("mock cluster");
        cluster.create_topic("t", 2, 1).expect("topic");
        let bootstrap = cluster.bootstrap_servers();
        let n = 300;
        let consumer: Arc<BaseConsumer> = Arc::new(
            ClientConfig::new()
                .set("bootstrap.servers", &bootstrap)
                .set("group.id", "split-test")
                .set("enable.auto.commit", "false")
                .create()
                .expect("consumer"),
        );
        let waker = Arc::new(Notify::new());
        // SAFETY: the waker is dropped after the consumer (at the end, explicitly).
        let queue = unsafe { SplitQueue::split(&consumer, "t", 0, &waker) }.expect("split");
        let mut tpl = TopicPartitionList::new();
        for p in 0..2 {
            tpl.add_partition_offset("t", p, Offset::Beginning)
                .expect("tpl");
        }
        consumer.assign(&tpl).expect("assign");

        // Produced after the split and the assignment, so the wake-up is for them.
        let producer: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .create()
            .expect("producer");
        for i in 0..n {
            for p in 0..2 {
                let headers = if i % 3 == 0 {
                    OwnedHeaders::new().insert(Header {
                        key: "Content-Type",
                        value: Some("application/x-protobuf"),
                    })
                } else {
                    OwnedHeaders::new().insert(Header {
                        key: "x-other",
                        value: Some("v"),
                    })
                };
                let (key, payload) = (format!("k{i}"), format!("p{p}-{i}"));
                producer
                    .send(
                        BaseRecord::to("t")
                            .partition(p)
                            .key(&key)
                            .payload(&payload)
                            .headers(headers),
                    )
                    .expect("send");
            }
        }
        producer.flush(Duration::from_secs(10)).expect("flush");

        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime");
        let wait = |d| rt.block_on(async { tokio::time::timeout(d, waker.notified()).await });
        let woken = wait(Duration::from_secs(10));
        assert!(woken.is_ok(), "the queue's reader was not woken");

        let mut fetched = Fetched::default();
        let mut next = 0;
        let deadline = Instant::now() + Duration::from_secs(10);
        while next < n && Instant::now() < deadline {
            queue.take(&mut fetched, 64);
            assert!(fetched.len() <= 64);
            for f in fetched.iter() {
                let Msg {
                    offset,
                    key,
                    payload,
                    content_type,
                } = f.expect("no error on the queue");
                assert_eq!(offset, next as i64);
                assert_eq!(key, Some(format!("k{next}").as_bytes()));
                assert_eq!(payload, Some(format!("p0-{next}").as_bytes()));
                let expected: Option<&[u8]> =
                    (next % 3 == 0).then_some(b"application/x-protobuf".as_slice());
                assert_eq!(content_type, expected);
                next += 1;
            }
            let empty = fetched.is_empty();
            fetched.clear();
            if empty {
                let _ = wait(Duration::from_millis(200));
            }
        }
        assert_eq!(next, n, "partition 0 read whole from its own queue");

        let mut other = 0;
        let deadline = Instant::now() + Duration::from_secs(10);
        while other < n && Instant::now() < deadline {
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
                assert_eq!(
                    m.partition(),
                    1,
                    "partition 0 came through the consumer's queue"
                );
                other += 1;
            }
        }
        assert_eq!(other, n);
        drop(queue);
        drop(consumer);
        drop(waker);
    }
}
