//! The population topic (docs/contract.md §8, §9): each task publishes its share of every UTC day it
//! closes, and the last day it closed; every instance reads the whole topic — one partition,
//! so every reader sees one order — into a [`Table`] (`rules::population`), from which each
//! task's engine takes the population's figures. A task does not let its watermark pass the
//! end of a day the population has not closed (`Engine::blocked_by`): it publishes its close
//! and waits for the table to say every task has closed the day. Records hold counts only.
//!
//! Keys: `s` + task (4 bytes) + day (4 bytes) for a share, `c` + task for its last closed day
//! (`i64::MAX`: the task is empty and idle, docs/contract.md §3). Values: a format byte and a postcard
//! body. The topic is compacted: a share sent again (a task restarted from its changelog
//! closes the same days again) replaces itself with the same figures.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message as _, Offset, TopicPartitionList};

use super::output::{Kind, Record};
use crate::config::Settings;
use crate::rules::population::{DayFigures, Table, EMPTY_TASK, KEEP_DAYS};

const FORMAT: u8 = 1;

/// One record of the population topic.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    Share { task: u32, day: i32, f: DayFigures },
    Closed { task: u32, day: i64 },
}

impl Message {
    pub fn record(&self, topic: &Arc<str>) -> Record {
        let mut key = Vec::with_capacity(9);
        let mut payload = vec![FORMAT];
        match self {
            Message::Share { task, day, f } => {
                key.push(b's');
                key.extend_from_slice(&task.to_be_bytes());
                key.extend_from_slice(&day.to_be_bytes());
                payload.extend(postcard::to_allocvec(f).unwrap_or_default());
            }
            Message::Closed { task, day } => {
                key.push(b'c');
                key.extend_from_slice(&task.to_be_bytes());
                payload.extend(postcard::to_allocvec(day).unwrap_or_default());
            }
        }
        Record {
            topic: Arc::clone(topic),
            partition: Some(0),
            key: Some(key),
            payload: Some(payload),
            headers: Vec::new(),
            kind: Kind::Population,
        }
    }

    pub fn decode(key: &[u8], value: &[u8]) -> Result<Message, String> {
        let body = match value.split_first() {
            Some((&FORMAT, body)) => body,
            Some((f, _)) => return Err(format!("format {f} is not one this momentd reads")),
            None => return Err("an empty record".into()),
        };
        let u32_at = |r: std::ops::Range<usize>| {
            key.get(r)
                .and_then(|b| b.try_into().ok())
                .map(u32::from_be_bytes)
        };
        let bad = |e: postcard::Error| e.to_string();
        match key.first() {
            Some(b's') if key.len() == 9 => Ok(Message::Share {
                task: u32_at(1..5).ok_or("a short key")?,
                day: u32_at(5..9).ok_or("a short key")? as i32,
                f: postcard::from_bytes(body).map_err(bad)?,
            }),
            Some(b'c') if key.len() == 5 => Ok(Message::Closed {
                task: u32_at(1..5).ok_or("a short key")?,
                day: postcard::from_bytes(body).map_err(bad)?,
            }),
            _ => Err("a key that is neither a share nor a close".into()),
        }
    }
}

/// The instance's reader of the population topic, shared by its tasks.
pub struct Population {
    pub topic: Arc<str>,
    pub table: Arc<Mutex<Table>>,
    /// The population's last closed day, as the table moves it.
    pub closed: tokio::sync::watch::Receiver<Option<i64>>,
    moved: Arc<tokio::sync::watch::Sender<Option<i64>>>,
    stop: Arc<AtomicBool>,
}

impl std::fmt::Debug for Population {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Population")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl Drop for Population {
    /// Stops the reader: it looks at the flag every 100 ms and destroys its client as it ends
    /// (`runtime::clients` counts it until then).
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

impl Population {
    /// Starts reading the population topic from its beginning, for `tasks` tasks (the input
    /// partitions), in a thread of its own.
    pub fn start(s: &Settings, tasks: usize) -> anyhow::Result<Population> {
        let topic: Arc<str> = s.population_topic().into();
        let mut c = super::client_config(s);
        c.set(
            "group.id",
            format!("{}-population-reader", s.kafka.group_id),
        )
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        // A task waits on it once per UTC day of event time: answer quickly.
        .set("fetch.wait.max.ms", "10");
        let consumer: BaseConsumer = c
            .create()
            .context("creating the population topic's consumer")?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&topic, 0, Offset::Beginning)
            .context("assigning the population topic")?;
        consumer
            .assign(&tpl)
            .context("assigning the population topic")?;
        let table = Arc::new(Mutex::new(Table::reading(tasks)));
        let (tx, rx) = tokio::sync::watch::channel(None);
        let tx = Arc::new(tx);
        let stop = Arc::new(AtomicBool::new(false));
        {
            let live = super::clients::Live::enter();
            let (table, stop, topic, tx) = (
                Arc::clone(&table),
                Arc::clone(&stop),
                topic.clone(),
                Arc::clone(&tx),
            );
            std::thread::Builder::new()
                .name("momentd-population".into())
                .spawn(move || {
                    read(consumer, &topic, &table, &tx, &stop);
                    drop(live);
                })
                .context("starting the population reader")?;
        }
        Ok(Population {
            topic,
            table,
            closed: rx,
            moved: tx,
            stop,
        })
    }

    /// A population of `tasks` tasks all in this process, with no topic behind it (the tests'
    /// barrier: each task's close reaches the table at once).
    pub fn local(tasks: usize) -> Population {
        let (tx, rx) = tokio::sync::watch::channel(None);
        Population {
            topic: "population".into(),
            table: Arc::new(Mutex::new(Table::new(tasks))),
            closed: rx,
            moved: Arc::new(tx),
            stop: Arc::new(AtomicBool::new(true)),
        }
    }

    /// A task of this instance closed its share through `closed`: the table takes it at once
    /// (the records go to the topic too, for the other instances and for restarts; read back,
    /// they change nothing). The tasks of one instance then wait for each other without a
    /// round trip through the broker.
    pub fn closed_here(&self, task: u32, shares: &[(i32, DayFigures)], closed: i64) {
        let mut t = self.table.lock().unwrap_or_else(|e| e.into_inner());
        for (day, f) in shares {
            t.share(task as usize, *day, *f);
        }
        if t.closed(task as usize, closed) {
            let through = t.through;
            drop(t);
            crate::metrics::population_closed(through);
            self.moved.send_replace(through);
        }
    }

    /// The records of task `task`'s closed shares, then of its last closed day (after them:
    /// a reader that sees the close has the shares).
    /// With each share goes a tombstone of the task's share of [`KEEP_DAYS`] before it: the
    /// compacted topic keeps what a reader needs, not every day since the start.
    pub fn records(&self, task: u32, shares: Vec<(i32, DayFigures)>, closed: i64) -> Vec<Record> {
        let mut out = Vec::with_capacity(2 * shares.len() + 1);
        for (day, f) in shares {
            out.push(Message::Share { task, day, f }.record(&self.topic));
            let mut old = Message::Share {
                task,
                day: day - KEEP_DAYS as i32 - 1,
                f: DayFigures::default(),
            }
            .record(&self.topic);
            old.payload = None;
            out.push(old);
        }
        out.push(Message::Closed { task, day: closed }.record(&self.topic));
        out
    }

    /// The record that says task `task` is empty and idle.
    pub fn empty(&self, task: u32) -> Record {
        Message::Closed {
            task,
            day: EMPTY_TASK,
        }
        .record(&self.topic)
    }
}

fn read(
    consumer: BaseConsumer,
    topic: &str,
    table: &Mutex<Table>,
    tx: &tokio::sync::watch::Sender<Option<i64>>,
    stop: &AtomicBool,
) {
    // Where the topic ended when the reader started: no day closes before it is read (see
    // `Table::reading`).
    let mut until = loop {
        if stop.load(Ordering::Acquire) {
            return;
        }
        match consumer.fetch_watermarks(topic, 0, Duration::from_secs(5)) {
            Ok((low, high)) => break (high > low).then_some(high),
            Err(e) => {
                tracing::warn!(topic, error = %e, "reading the population topic's end; retrying");
                std::thread::sleep(Duration::from_millis(500));
            }
        }
    };
    let caught_up = |table: &Mutex<Table>| {
        let mut t = table.lock().unwrap_or_else(|e| e.into_inner());
        if t.caught_up() {
            let through = t.through;
            drop(t);
            crate::metrics::population_closed(through);
            tx.send_replace(through);
        }
        tracing::info!(topic, "population topic read");
    };
    if until.is_none() {
        caught_up(table);
    }
    while !stop.load(Ordering::Acquire) {
        let Some(r) = consumer.poll(Duration::from_millis(100)) else {
            // (Compaction may have removed the last records: the position says.)
            if let Some(end) = until {
                let at = consumer
                    .position()
                    .ok()
                    .and_then(|p| p.find_partition(topic, 0).and_then(|e| e.offset().to_raw()));
                if at.is_some_and(|o| o >= end) {
                    until = None;
                    caught_up(table);
                }
            }
            continue;
        };
        let m = match r {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(topic, error = %e, "reading the population topic");
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        let (Some(key), Some(value)) = (m.key(), m.payload()) else {
            // (A tombstone of a share long closed.)
            continue;
        };
        let moved = match Message::decode(key, value) {
            Ok(Message::Share { task, day, f }) => {
                table
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .share(task as usize, day, f);
                false
            }
            Ok(Message::Closed { task, day }) => table
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .closed(task as usize, day),
            Err(e) => {
                crate::metrics::population_unreadable();
                tracing::error!(
                    topic, offset = m.offset(), error = %e,
                    "population record cannot be read; skipped"
                );
                false
            }
        };
        if moved {
            let through = table.lock().unwrap_or_else(|e| e.into_inner()).through;
            crate::metrics::population_closed(through);
            tx.send_replace(through);
        }
        if until.is_some_and(|end| m.offset() + 1 >= end) {
            until = None;
            caught_up(table);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_read_back_and_bad_bytes_are_refused() {
        let topic: Arc<str> = "p".into();
        let share = Message::Share {
            task: 3,
            day: 20_400,
            f: DayFigures {
                active: 5,
                present: 4,
                reported: [3, 2],
                collab: 40,
                tasks_completed: 7,
                tasks_planned: 9,
                checkins_completed: 1,
            },
        };
        for m in [
            share,
            Message::Closed {
                task: 1,
                day: EMPTY_TASK,
            },
        ] {
            let r = m.record(&topic);
            let back = Message::decode(r.key.as_deref().unwrap(), r.payload.as_deref().unwrap());
            assert_eq!(back, Ok(m));
        }
        assert!(Message::decode(b"s\0\0\0\x03", &[FORMAT, 1]).is_err());
        assert!(Message::decode(b"c\0\0\0\x03", &[9, 1]).is_err());
        assert!(Message::decode(b"c\0\0\0\x03", &[]).is_err());
        assert!(Message::decode(b"x", &[FORMAT]).is_err());
    }
}
