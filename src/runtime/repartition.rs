//! The repartition topic (docs/contract.md §9): employee tasks publish their events' contributions to
//! the partition that owns each group, and their watermarks to every partition; task p reads
//! partition p into its engine's group stage (`engine::stage`). Records hold fingerprints and
//! counts only — never an employee id, never a comment's text.
//!
//! A task sends the contributions of a batch of input as one record per partition (the
//! contributions to that partition's groups, in the order they were made), and its watermark
//! as one record to every partition, after them. Key: `c` + the source partition (4 bytes),
//! `w` for a watermark. Value: a format byte and a postcard body.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::output::{Kind, Record};
use crate::engine::stage::{partition_of, From};
use crate::rules::group::Contribution;
use crate::time::Ts;

const FORMAT: u8 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Message {
    Contributions(Vec<(Contribution, From)>),
    /// Employee task `source`'s watermark (`None`: it has had no event yet and is idle).
    Watermark {
        source: u32,
        at: Option<Ts>,
    },
}

impl Message {
    pub fn decode(b: &[u8]) -> Result<Message, String> {
        match b.split_first() {
            Some((&FORMAT, body)) => postcard::from_bytes(body).map_err(|e| e.to_string()),
            Some((f, _)) => Err(format!("format {f} is not one this momentd reads")),
            None => Err("an empty record".into()),
        }
    }

    fn encode(&self) -> Vec<u8> {
        let mut v = vec![FORMAT];
        v.extend(postcard::to_allocvec(self).unwrap_or_default());
        v
    }
}

/// Where the repartition records go.
#[derive(Clone, Debug)]
pub struct Repartition {
    pub topic: Arc<str>,
    pub partitions: u32,
}

impl Repartition {
    fn record(&self, partition: u32, key: Vec<u8>, m: &Message) -> Record {
        Record {
            topic: Arc::clone(&self.topic),
            partition: Some(partition as i32),
            key: Some(key),
            payload: Some(m.encode()),
            headers: Vec::new(),
            kind: Kind::Repartition,
        }
    }

    /// The records of source `source`'s contributions: one per partition that has any.
    pub fn contributions(
        &self,
        source: u32,
        cs: impl Iterator<Item = (Contribution, From)>,
    ) -> Vec<Record> {
        let mut by: Vec<Vec<(Contribution, From)>> =
            (0..self.partitions).map(|_| Vec::new()).collect();
        for (c, from) in cs {
            match c.group_key() {
                Some(k) => by[partition_of(k, self.partitions) as usize].push((c, from)),
                // An erasure: every group forgets the member.
                None => by.iter_mut().for_each(|v| v.push((c.clone(), from))),
            }
        }
        let mut key = b"c".to_vec();
        key.extend_from_slice(&source.to_be_bytes());
        by.into_iter()
            .enumerate()
            .filter(|(_, v)| !v.is_empty())
            .map(|(p, v)| self.record(p as u32, key.clone(), &Message::Contributions(v)))
            .collect()
    }

    /// The records of a task's watermark, one to every partition.
    pub fn watermark(&self, source: u32, at: Option<Ts>) -> Vec<Record> {
        let m = Message::Watermark { source, at };
        (0..self.partitions)
            .map(|p| self.record(p, b"w".to_vec(), &m))
            .collect()
    }
}
