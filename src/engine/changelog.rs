//! The engine's side of the state changelog (docs/contract.md §9), pure like the rest of the engine:
//! [`Engine::checkpoint`] turns what changed since the last checkpoint into records, and a
//! [`Restorer`] rebuilds an engine from the records of a changelog partition. The runtime moves
//! the bytes (`runtime::changelog`).
//!
//! **Records.** Keys: `c` (the task's clock), `e` + 16 bytes (an employee, by the index key —
//! a keyed fingerprint when pseudonymizing), `t` / `o` + 16 bytes (a team, a cohort, by a
//! fingerprint of its id). A value is one format byte ([`FORMAT`]) and a postcard body; a
//! deletion is a tombstone. An employee's record holds its subject (the pseudonym when
//! pseudonymizing: never the raw id), its experiment points, and its state; an erased
//! employee's record is an erasure mark (the fingerprint is its key), so late events cannot
//! recreate the state. Timers are not written: they derive from the state.
//!
//! **Consistency without transactions.** A checkpoint writes groups first, then employees,
//! then the clock, all to the task's one changelog partition, through an idempotent producer
//! (in order, no gaps), and only after every output of the input it covers was acknowledged;
//! the input offset is committed after the checkpoint is. Every record carries the input
//! position it reflects (`through`: per input topic, the next offset to read). A crash can
//! leave a checkpoint half written — some records persisted, its clock not — so on restore a
//! record may be *ahead* of the clock. The input is then read again from the committed offset,
//! and [`Engine::apply_at`] skips, per record, what the restored state already holds: an
//! event before the clock's position reaches nothing but the clock; one before its employee's
//! record's position is skipped for the employee and its groups (a persisted employee record
//! implies its groups' records of that checkpoint are persisted: they were written first); one
//! before a team's or cohort's position is skipped for that group only. The restored engine is
//! then the one an uninterrupted run would have — last record per key wins, so this holds on a
//! compacted changelog and on one never compacted.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::{Dues, EmployeeState, Engine, Keys, Parts};
use crate::event::Event;
use crate::rules::group::{Cohort, Contribution, GroupRecord, Team};
use crate::rules::population::{Accumulator, Figures};
use crate::rules::presence::Gaps;
use crate::time::Ts;

/// The format byte every value starts with. A later version reads every earlier one.
///
/// * 1: an employee's record holds its state as a nested value.
/// * 2: the state as bytes of its own, beside the flags, the last day seen and the earliest
///   deadline; the clock gains the rules' deadline version. A restore keeps the bytes as they
///   are and decodes them at the employee's next event or deadline (Kafka Streams restores
///   bytes into its store the same way), so a restore costs little more than reading.
///
/// * 3: an employee's state gains its recorded time off (a format-2 state reads as one
///   without).
/// * 4: an employee's state gains the days of its last rollups; the task's population share
///   (`p`) and, when the task is its own population, the population's figures (`f`).
pub const FORMAT: u8 = 4;

const CLOCK: u8 = b'c';
const EMPLOYEE: u8 = b'e';
const TEAM: u8 = b't';
const COHORT: u8 = b'o';
/// A contribution waiting in the group stage: `b` + its order key (time, member, event, kind).
const BUFFERED: u8 = b'b';
/// The task's population share of the days it has not closed (see `rules::population`).
const POPULATION: u8 = b'p';
/// The population's figures, when the task is the whole population (`replay`-like).
const FIGURES: u8 = b'f';
const POPULATION_KEY: &[u8] = b"p";
const FIGURES_KEY: &[u8] = b"f";

/// The key of the task's clock record.
pub const CLOCK_KEY: &[u8] = b"c";

/// One changelog record: `value: None` is a tombstone.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub key: Vec<u8>,
    pub value: Option<Vec<u8>>,
}

fn buffered_key(k: super::stage::OrderKey) -> Vec<u8> {
    let mut v = Vec::with_capacity(26);
    v.push(BUFFERED);
    v.extend_from_slice(&k.0.to_be_bytes());
    v.extend_from_slice(&k.1.to_be_bytes());
    v.extend_from_slice(&k.2.to_be_bytes());
    v.push(k.3);
    v
}

fn key(kind: u8, k: u128) -> Vec<u8> {
    let mut v = Vec::with_capacity(17);
    v.push(kind);
    v.extend_from_slice(&k.to_be_bytes());
    v
}

/// The task's clock: where the input was, and the engine's time, at the checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Clock {
    /// The input topics, in the order of `through` in every record.
    pub topics: Vec<String>,
    /// Per input topic: the next offset to read.
    pub through: Vec<i64>,
    pub watermark: Ts,
    pub max_event_time: Option<Ts>,
    /// The last UTC day whose close the team rules evaluated.
    pub groups_evaluated_through: Option<i64>,
    /// The group stage's time, each source's watermark, and the highest position taken from
    /// each (source, input topic) (see `stage`).
    pub stage_watermark: Option<Ts>,
    pub sources: Vec<Option<Ts>>,
    pub highest: Vec<((u32, u16), (i64, u8))>,
    /// Members whose erasure the stage applied.
    pub erased_members: Vec<u64>,
    /// Written in publish mode (the repartition stage): group state then is the groups this
    /// partition owns; otherwise the groups of its own employees.
    pub publish: bool,
}

/// A format-1 clock.
#[derive(Debug, Deserialize)]
struct Clock1 {
    topics: Vec<String>,
    through: Vec<i64>,
    watermark: Ts,
    max_event_time: Option<Ts>,
    groups_evaluated_through: Option<i64>,
}

/// A value as written (borrowing the engine's state) — the same postcard layout as [`Value`].
#[derive(Serialize)]
enum ValueRef<'a> {
    Clock(&'a Clock),
    Employee {
        through: &'a [i64],
        subject: &'a str,
        points: Vec<(&'a str, f64)>,
        flags: u8,
        seen_day: i32,
        /// The earliest deadline, under the rules hashed in `dues` (see `Dues::version`).
        due: Option<Ts>,
        dues: u64,
        /// [`EmployeeState::to_bytes`].
        state: &'a [u8],
    },
    Erased {
        through: &'a [i64],
    },
    Team {
        through: &'a [i64],
        /// The group stage's time at the checkpoint: contributions before it are applied.
        released: Option<Ts>,
        evaluated_through: Option<i64>,
        team: &'a Team,
    },
    Cohort {
        through: &'a [i64],
        released: Option<Ts>,
        timers: Vec<(Ts, &'a str)>,
        cohort: &'a Cohort,
    },
    Buffered(&'a Contribution),
    /// Evicted by `state.idle_ttl` as of `through` (tombstoned at the next checkpoint).
    Evicted {
        through: &'a [i64],
    },
    Population {
        through: &'a [i64],
        acc: &'a Accumulator,
    },
    Figures {
        closed: Option<i64>,
        figures: &'a Figures,
        gaps: &'a Gaps,
    },
}

/// A format-2 value as read (the state's bytes borrowed from the record).
#[derive(Debug, Deserialize)]
enum Value<'a> {
    Clock(Clock),
    Employee {
        through: Vec<i64>,
        subject: String,
        points: Vec<(String, f64)>,
        flags: u8,
        seen_day: i32,
        due: Option<Ts>,
        dues: u64,
        #[serde(borrow)]
        state: &'a [u8],
    },
    Erased {
        through: Vec<i64>,
    },
    Team {
        through: Vec<i64>,
        released: Option<Ts>,
        evaluated_through: Option<i64>,
        team: Team,
    },
    Cohort {
        through: Vec<i64>,
        released: Option<Ts>,
        timers: Vec<(Ts, String)>,
        cohort: Cohort,
    },
    Buffered(Contribution),
    Evicted {
        through: Vec<i64>,
    },
    Population {
        through: Vec<i64>,
        acc: Accumulator,
    },
    Figures {
        closed: Option<i64>,
        figures: Figures,
        gaps: Gaps,
    },
}

/// A format-1 value as read.
#[derive(Debug, Deserialize)]
enum Value1 {
    Clock(Clock1),
    Employee {
        through: Vec<i64>,
        subject: String,
        points: Vec<(String, f64)>,
        state: EmployeeState,
    },
    Erased {
        through: Vec<i64>,
    },
    Team {
        through: Vec<i64>,
        evaluated_through: Option<i64>,
        team: Team,
    },
    Cohort {
        through: Vec<i64>,
        timers: Vec<(Ts, String)>,
        cohort: Cohort,
    },
}

/// A restored employee's state: decoded (format 1), or its bytes with what is read without
/// decoding them (format 2).
enum StateIn<'a> {
    Full(EmployeeState),
    Packed {
        flags: u8,
        seen_day: i32,
        due: Option<Ts>,
        dues: u64,
        bytes: &'a [u8],
        /// The format they were written by ([`EmployeeState::upgrade`] makes them this
        /// version's).
        format: u8,
    },
}

/// A value of any format, as the restore takes it.
enum Parsed<'a> {
    Clock(Clock),
    Employee {
        through: Vec<i64>,
        subject: String,
        points: Vec<(String, f64)>,
        state: StateIn<'a>,
    },
    Erased {
        through: Vec<i64>,
    },
    /// `released`: the group stage's time at the checkpoint (format 1: everything before
    /// `through` is applied).
    Team {
        through: Vec<i64>,
        released: Ts,
        evaluated_through: Option<i64>,
        team: Team,
    },
    Cohort {
        through: Vec<i64>,
        released: Ts,
        timers: Vec<(Ts, String)>,
        cohort: Cohort,
    },
    Buffered(Contribution),
    Evicted {
        through: Vec<i64>,
    },
    Population {
        through: Vec<i64>,
        acc: Accumulator,
    },
    Figures {
        closed: Option<i64>,
        figures: Figures,
        gaps: Gaps,
    },
}

impl<'a> Parsed<'a> {
    fn from_value(v: Value<'a>, format: u8) -> Parsed<'a> {
        match v {
            Value::Clock(c) => Parsed::Clock(c),
            Value::Employee {
                through,
                subject,
                points,
                flags,
                seen_day,
                due,
                dues,
                state,
            } => Parsed::Employee {
                through,
                subject,
                points,
                state: StateIn::Packed {
                    flags,
                    seen_day,
                    due,
                    dues,
                    bytes: state,
                    format,
                },
            },
            Value::Erased { through } => Parsed::Erased { through },
            // No stage time yet: nothing was released.
            Value::Team {
                through,
                released,
                evaluated_through,
                team,
            } => Parsed::Team {
                through,
                released: released.unwrap_or(Ts::MIN),
                evaluated_through,
                team,
            },
            Value::Cohort {
                through,
                released,
                timers,
                cohort,
            } => Parsed::Cohort {
                through,
                released: released.unwrap_or(Ts::MIN),
                timers,
                cohort,
            },
            Value::Buffered(c) => Parsed::Buffered(c),
            Value::Evicted { through } => Parsed::Evicted { through },
            Value::Population { through, acc } => Parsed::Population { through, acc },
            Value::Figures {
                closed,
                figures,
                gaps,
            } => Parsed::Figures {
                closed,
                figures,
                gaps,
            },
        }
    }
}

impl From<Value1> for Parsed<'_> {
    fn from(v: Value1) -> Self {
        match v {
            Value1::Clock(c) => Parsed::Clock(Clock {
                topics: c.topics,
                through: c.through,
                watermark: c.watermark,
                max_event_time: c.max_event_time,
                groups_evaluated_through: c.groups_evaluated_through,
                stage_watermark: None,
                sources: Vec::new(),
                highest: Vec::new(),
                erased_members: Vec::new(),
                publish: false,
            }),
            Value1::Employee {
                through,
                subject,
                points,
                state,
            } => Parsed::Employee {
                through,
                subject,
                points,
                state: StateIn::Full(state),
            },
            Value1::Erased { through } => Parsed::Erased { through },
            Value1::Team {
                through,
                evaluated_through,
                team,
            } => Parsed::Team {
                through,
                released: Ts::MAX,
                evaluated_through,
                team,
            },
            Value1::Cohort {
                through,
                timers,
                cohort,
            } => Parsed::Cohort {
                through,
                released: Ts::MAX,
                timers,
                cohort,
            },
        }
    }
}

fn encode(v: &ValueRef<'_>) -> Vec<u8> {
    // The format byte, then the value serialized after it in the same vector (an employee's
    // record is 300-700 bytes: reserved for most, not grown from nothing).
    let mut out = Vec::with_capacity(512);
    out.push(FORMAT);
    // Serializing owned, finite values into a vector cannot fail.
    postcard::to_extend(v, out).unwrap_or_else(|_| vec![FORMAT])
}

/// Why a changelog record could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("unknown key {0:?}")]
    Key(String),
    #[error("value of {0} bytes has no format byte")]
    Empty(usize),
    #[error("format {0} is newer than this momentd reads ({FORMAT})")]
    Format(u8),
    #[error("value does not decode: {0}")]
    Body(String),
    #[error("a {0} value under a {1} key")]
    Mismatch(&'static str, &'static str),
}

/// What the restore found, and what [`Engine::apply_at`] skips because of it.
#[derive(Debug, Default)]
pub struct Ahead {
    /// The clock's position: input before it is held by the state.
    clock: Vec<i64>,
    /// Records written after the clock (a checkpoint cut short): their positions.
    employees: HashMap<u128, Vec<i64>>,
    teams: HashMap<u128, Vec<i64>>,
    cohorts: HashMap<u128, Vec<i64>>,
    /// The population share's position: the events before it are in it.
    population: Vec<i64>,
    /// Per input topic, the largest position of any record, and whether the input passed it.
    max: Vec<i64>,
    passed: Vec<bool>,
}

fn before(o: i64, through: &[i64], i: usize) -> bool {
    through.get(i).is_some_and(|&t| o < t)
}

impl Ahead {
    /// What of the event at `pos` the restored state does not hold yet.
    pub(crate) fn parts(&self, keys: &Keys, ev: &Event<'_>, pos: (usize, i64)) -> Parts {
        let (i, o) = pos;
        if before(o, &self.clock, i) {
            return Parts::NONE;
        }
        if self
            .employees
            .get(&keys.employee)
            .is_some_and(|t| before(o, t, i))
        {
            return Parts::NONE;
        }
        // (What the groups' restored state holds the group stage finds out itself: see
        // `stage`.)
        let _ = ev;
        Parts {
            employee: true,
            population: !before(o, &self.population, i),
        }
    }

    /// Records that the input reached `pos`; true once it passed every restored position.
    pub(crate) fn passed(&mut self, pos: (usize, i64)) -> bool {
        let (i, o) = pos;
        if let (Some(p), Some(&m)) = (self.passed.get_mut(i), self.max.get(i)) {
            *p |= o + 1 >= m;
        }
        self.passed.iter().all(|&p| p)
    }

    fn note(&mut self, through: &[i64]) -> bool {
        let ahead = through
            .iter()
            .enumerate()
            .any(|(i, &t)| t > self.clock.get(i).copied().unwrap_or(i64::MIN));
        if ahead {
            for (i, &t) in through.iter().enumerate() {
                if let Some(m) = self.max.get_mut(i) {
                    *m = (*m).max(t);
                }
            }
        }
        ahead
    }
}

/// What checkpoints wrote, for the metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    pub employees: usize,
    pub groups: usize,
    pub erased: usize,
    /// Tombstones of employees evicted by `state.idle_ttl`.
    pub evicted: usize,
    /// Contributions waiting in the group stage, and tombstones of those released since.
    pub buffered: usize,
    pub clock: usize,
    /// The population share and figures.
    pub population: usize,
}

impl Written {
    /// Every kind of record a checkpoint writes, as `momentd_changelog_records_written_total`
    /// labels them. The destructuring is exhaustive: a kind added to `Written` must be named
    /// here, so no kind goes uncounted.
    pub const KINDS: [&'static str; 7] = [
        "employee",
        "group",
        "erased",
        "evicted",
        "buffered",
        "clock",
        "population",
    ];

    /// The counts, in the order of [`Written::KINDS`].
    pub fn by_kind(&self) -> [(&'static str, usize); 7] {
        let Written {
            employees,
            groups,
            erased,
            evicted,
            buffered,
            clock,
            population,
        } = *self;
        let n = [
            employees, groups, erased, evicted, buffered, clock, population,
        ];
        std::array::from_fn(|i| (Self::KINDS[i], n[i]))
    }

    pub fn total(&self) -> usize {
        self.by_kind().iter().map(|(_, n)| n).sum()
    }
}

impl Engine {
    /// The clock of the last checkpoint written or restored.
    pub fn last_checkpoint(&self) -> Option<&Clock> {
        self.last_clock.as_ref()
    }

    /// Whether anything changed since the last checkpoint.
    pub fn is_dirty(&self) -> bool {
        !self.dirty.is_empty()
            || !self.dirty_erased.is_empty()
            || !self.dirty_evicted.is_empty()
            || !self.evicted_marks.is_empty()
            || self.groups.has_dirty()
            || self.stage.unwritten > 0
            || !self.stage.released.is_empty()
            || self.pop.dirty
    }

    /// The records of everything that changed since the last checkpoint, as of the input
    /// position `through` (per topic of `topics`, the next offset to read) — groups first,
    /// then employees and erasure marks, then the clock (written when anything changed, or
    /// the position or time moved). Appends them to `out`.
    pub fn checkpoint(
        &mut self,
        topics: &[String],
        through: &[i64],
        out: &mut Vec<Record>,
    ) -> Written {
        let mut w = Written::default();
        // The population first: the share's position may be ahead of an employee's, never
        // behind (see `Ahead::parts`); the figures (a task that is its own population) before
        // the share, so a share restored ahead of them re-closes no day into them twice.
        if self.pop.local && self.pop.closed != self.pop.written_closed {
            w.population += 1;
            out.push(Record {
                key: FIGURES_KEY.to_vec(),
                value: Some(encode(&ValueRef::Figures {
                    closed: self.pop.closed,
                    figures: &self.pop.figures,
                    gaps: &self.pop.gaps,
                })),
            });
            self.pop.written_closed = self.pop.closed;
        }
        if std::mem::take(&mut self.pop.dirty) {
            w.population += 1;
            out.push(Record {
                key: POPULATION_KEY.to_vec(),
                value: Some(encode(&ValueRef::Population {
                    through,
                    acc: &self.pop.acc,
                })),
            });
        }
        // Team records carry the day evaluation had reached (read back only when the record
        // turns out to be ahead of its clock).
        let evaluated_through = self.groups.evaluated_through();
        let released = self.stage.watermark;
        self.groups.drain_dirty(|g| {
            w.groups += 1;
            out.push(match g {
                GroupRecord::Team { key: k, team } => Record {
                    key: key(TEAM, k),
                    value: Some(encode(&ValueRef::Team {
                        through,
                        released,
                        evaluated_through,
                        team,
                    })),
                },
                GroupRecord::Cohort {
                    key: k,
                    cohort,
                    timers,
                } => Record {
                    key: key(COHORT, k),
                    value: Some(encode(&ValueRef::Cohort {
                        through,
                        released,
                        timers,
                        cohort,
                    })),
                },
            })
        });
        // After the groups: a restored contribution their records show applied is dropped
        // (see `Restorer::finish`), so a cut between the two loses or doubles nothing.
        if self.stage.unwritten > 0 {
            for (&k, waiting) in self.stage.buffer.iter_mut().filter(|(_, x)| !x.written) {
                w.buffered += 1;
                out.push(Record {
                    key: buffered_key(k),
                    value: Some(encode(&ValueRef::Buffered(&waiting.c))),
                });
                waiting.written = true;
            }
            self.stage.unwritten = 0;
        }
        for k in std::mem::take(&mut self.stage.released) {
            w.buffered += 1;
            out.push(Record {
                key: buffered_key(k),
                value: None,
            });
        }
        let experiments = &self.ctx.rules.experiment_list;
        // One buffer for every employee's state bytes (copied into its record's value).
        let mut scratch = Vec::new();
        for slot in std::mem::take(&mut self.dirty) {
            let Some(sl) = self.slots.get_mut(slot as usize) else {
                continue;
            };
            if !std::mem::take(&mut sl.dirty) || sl.subject.is_empty() {
                continue;
            }
            let points = experiments
                .iter()
                .zip(sl.points.iter())
                .filter(|(_, p)| !p.is_nan())
                .map(|(e, &p)| (e.id.as_str(), p))
                .collect();
            w.employees += 1;
            let (bytes, due) = match &sl.packed {
                Some(b) => (&b[..], sl.due),
                None => {
                    scratch.clear();
                    scratch = sl.state.write_bytes(std::mem::take(&mut scratch));
                    (&scratch[..], sl.dues.min())
                }
            };
            out.push(Record {
                key: key(EMPLOYEE, sl.key),
                value: Some(encode(&ValueRef::Employee {
                    through,
                    subject: &sl.subject,
                    points,
                    flags: sl.state.flags,
                    seen_day: sl.state.seen_day,
                    due,
                    dues: self.dues_version,
                    state: bytes,
                })),
            });
        }
        // Evicted at the last checkpoint, and its clock is written since: the mark can go.
        for k in std::mem::take(&mut self.evicted_marks) {
            if self.index.get(k).is_some() {
                continue;
            }
            w.evicted += 1;
            out.push(Record {
                key: key(EMPLOYEE, k),
                value: None,
            });
        }
        // Evicted since the last checkpoint: a mark with the position first, not a tombstone
        // — a checkpoint cut after it, before its clock, must not make the input read again
        // rebuild the employee from nothing (the tombstone follows at the next checkpoint).
        for k in std::mem::take(&mut self.dirty_evicted) {
            // Evicted and back since: the employee's record above holds the new state.
            if self.index.get(k).is_some() {
                continue;
            }
            w.evicted += 1;
            out.push(Record {
                key: key(EMPLOYEE, k),
                value: Some(encode(&ValueRef::Evicted { through })),
            });
            self.evicted_marks.push(k);
        }
        for k in std::mem::take(&mut self.dirty_erased) {
            w.erased += 1;
            out.push(Record {
                key: key(EMPLOYEE, k),
                value: Some(encode(&ValueRef::Erased { through })),
            });
        }
        let clock = Clock {
            topics: topics.to_vec(),
            through: through.to_vec(),
            watermark: self.watermark,
            max_event_time: self.max_event_time,
            groups_evaluated_through: self.groups.evaluated_through(),
            stage_watermark: self.stage.watermark,
            sources: self.stage.sources.clone(),
            highest: self.stage.highest.iter().map(|(&k, &v)| (k, v)).collect(),
            erased_members: self.stage.erased.iter().copied().collect(),
            publish: self.publish.is_some(),
        };
        if w.total() > 0 || self.last_clock.as_ref() != Some(&clock) {
            w.clock = 1;
            out.push(Record {
                key: CLOCK_KEY.to_vec(),
                value: Some(encode(&ValueRef::Clock(&clock))),
            });
            self.last_clock = Some(clock);
        }
        w
    }
}

fn decode_body(v: &[u8]) -> Result<Parsed<'_>, RecordError> {
    let (&format, body) = v.split_first().ok_or(RecordError::Empty(v.len()))?;
    let bad = |e: postcard::Error| RecordError::Body(e.to_string());
    match format {
        // A format-1 employee value ends with its state, which then ended before `time_off`:
        // the fields added since, empty, are appended (see `EmployeeState::upgrade`; other
        // values ignore it).
        1 => postcard::from_bytes::<Value1>(&EmployeeState::upgrade(body, 1))
            .map(Parsed::from)
            .map_err(bad),
        2..=4 => postcard::from_bytes::<Value<'_>>(body)
            .map(|v| Parsed::from_value(v, format))
            .map_err(bad),
        _ => Err(RecordError::Format(format)),
    }
}

/// A restored employee's state, owned.
enum Restored {
    Full(EmployeeState),
    Packed {
        flags: u8,
        seen_day: i32,
        due: Option<Ts>,
        dues: u64,
        bytes: Box<[u8]>,
    },
}

enum Entry {
    Employee {
        through: Vec<i64>,
        subject: String,
        points: Vec<(String, f64)>,
        state: Restored,
    },
    Erased(Vec<i64>),
    Evicted(Vec<i64>),
}

/// The restore's maps hash with fixed keys: the restored slots are then in the same order on
/// every restore of the same records (and so are timers of one instant, and checkpoints'
/// records), not in an order that differs from run to run.
#[derive(Debug, Clone, Copy, Default)]
struct FixedHash;

impl std::hash::BuildHasher for FixedHash {
    type Hasher = ahash::AHasher;
    fn build_hasher(&self) -> ahash::AHasher {
        ahash::RandomState::with_seeds(0x6d6f, 0x6d65, 0x6e74, 0x6421).build_hasher()
    }
}

/// Rebuilds an engine from a changelog partition's records, read in offset order: the last
/// record of each key wins, a tombstone deletes. Undecodable records are refused one by one
/// ([`Restorer::add`] returns the error; the caller decides what to do with it).
#[derive(Default)]
pub struct Restorer {
    clock: Option<Clock>,
    // Boxed: a restore moves each entry once into the map and once out of it, not its ~200
    // bytes at every rehash. (The keys are fingerprints already: ahash is plenty.)
    employees: HashMap<u128, Box<Entry>, FixedHash>,
    teams: HashMap<u128, GroupIn<Option<i64>, Team>, FixedHash>,
    cohorts: HashMap<u128, GroupIn<Vec<(Ts, String)>, Cohort>, FixedHash>,
    buffered: std::collections::BTreeMap<super::stage::OrderKey, Contribution>,
    population: Option<(Vec<i64>, Accumulator)>,
    figures: Option<(Option<i64>, Figures, Gaps)>,
    /// Records and bytes read.
    pub records: u64,
    pub bytes: u64,
}

/// A restored group record: its input position, the stage's time it was written at, what it
/// holds beside the group (a team's evaluated day, a cohort's stall deadlines), the group.
struct GroupIn<X, G> {
    through: Vec<i64>,
    released: Ts,
    extra: X,
    group: G,
}

fn order_key_of(rest: &[u8]) -> Option<super::stage::OrderKey> {
    if rest.len() != 25 {
        return None;
    }
    let n = |r: std::ops::Range<usize>| rest.get(r).and_then(|b| b.try_into().ok());
    Some((
        i64::from_be_bytes(n(0..8)?),
        u64::from_be_bytes(n(8..16)?),
        u64::from_be_bytes(n(16..24)?),
        rest[24],
    ))
}

fn key_of(k: &[u8]) -> Result<(u8, u128), RecordError> {
    if k == CLOCK_KEY {
        return Ok((CLOCK, 0));
    }
    if k == POPULATION_KEY {
        return Ok((POPULATION, 0));
    }
    if k == FIGURES_KEY {
        return Ok((FIGURES, 0));
    }
    match k {
        [BUFFERED, rest @ ..] if rest.len() == 25 => Ok((BUFFERED, 0)),
        [kind @ (EMPLOYEE | TEAM | COHORT), rest @ ..] if rest.len() == 16 => {
            let mut b = [0u8; 16];
            b.copy_from_slice(rest);
            Ok((*kind, u128::from_be_bytes(b)))
        }
        _ => Err(RecordError::Key(
            k.iter().take(24).map(|b| format!("{b:02x}")).collect(),
        )),
    }
}

impl Restorer {
    /// Takes one record (`value: None` for a tombstone).
    pub fn add(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<(), RecordError> {
        self.records += 1;
        self.bytes += (key.len() + value.map_or(0, <[u8]>::len)) as u64;
        let (kind, k) = key_of(key)?;
        let Some(v) = value else {
            match kind {
                EMPLOYEE => drop(self.employees.remove(&k)),
                TEAM => drop(self.teams.remove(&k)),
                COHORT => drop(self.cohorts.remove(&k)),
                BUFFERED => {
                    if let Some(o) = order_key_of(&key[1..]) {
                        self.buffered.remove(&o);
                    }
                }
                POPULATION => self.population = None,
                FIGURES => self.figures = None,
                _ => self.clock = None,
            }
            return Ok(());
        };
        let mismatch = |what| RecordError::Mismatch(what, kind_name(kind));
        match (kind, decode_body(v)?) {
            (CLOCK, Parsed::Clock(c)) => self.clock = Some(c),
            (
                EMPLOYEE,
                Parsed::Employee {
                    through,
                    subject,
                    points,
                    state,
                },
            ) => {
                if subject.is_empty() {
                    return Err(RecordError::Body(
                        "an employee with an empty subject".into(),
                    ));
                }
                let state = match state {
                    StateIn::Full(s) if !s.within_bounds() => {
                        return Err(RecordError::Body(
                            "an employee's time off outside its bounds".into(),
                        ));
                    }
                    StateIn::Full(s) => Restored::Full(s),
                    StateIn::Packed {
                        flags,
                        seen_day,
                        due,
                        dues,
                        bytes,
                        format,
                    } => Restored::Packed {
                        flags,
                        seen_day,
                        due,
                        dues,
                        bytes: if format < FORMAT {
                            EmployeeState::upgrade(bytes, format).into()
                        } else {
                            bytes.into()
                        },
                    },
                };
                self.employees.insert(
                    k,
                    Box::new(Entry::Employee {
                        through,
                        subject,
                        points,
                        state,
                    }),
                );
            }
            (EMPLOYEE, Parsed::Erased { through }) => {
                self.employees.insert(k, Box::new(Entry::Erased(through)));
            }
            (EMPLOYEE, Parsed::Evicted { through }) => {
                self.employees.insert(k, Box::new(Entry::Evicted(through)));
            }
            (
                TEAM,
                Parsed::Team {
                    through,
                    released,
                    evaluated_through,
                    team,
                },
            ) => {
                self.teams.insert(
                    k,
                    GroupIn {
                        through,
                        released,
                        extra: evaluated_through,
                        group: team,
                    },
                );
            }
            (
                COHORT,
                Parsed::Cohort {
                    through,
                    released,
                    timers,
                    cohort,
                },
            ) => {
                self.cohorts.insert(
                    k,
                    GroupIn {
                        through,
                        released,
                        extra: timers,
                        group: cohort,
                    },
                );
            }
            (BUFFERED, Parsed::Buffered(c)) => {
                let o = order_key_of(&key[1..])
                    .filter(|&o| o == c.order())
                    .ok_or_else(|| {
                        RecordError::Body("a contribution under another's key".into())
                    })?;
                self.buffered.insert(o, c);
            }
            (POPULATION, Parsed::Population { through, acc }) => {
                self.population = Some((through, acc))
            }
            (
                FIGURES,
                Parsed::Figures {
                    closed,
                    figures,
                    gaps,
                },
            ) => self.figures = Some((closed, figures, gaps)),
            (_, Parsed::Population { .. }) => return Err(mismatch("population share")),
            (_, Parsed::Figures { .. }) => return Err(mismatch("population figures")),
            (_, Parsed::Clock(_)) => return Err(mismatch("clock")),
            (_, Parsed::Employee { .. } | Parsed::Erased { .. } | Parsed::Evicted { .. }) => {
                return Err(mismatch("employee"))
            }
            (_, Parsed::Team { .. }) => return Err(mismatch("team")),
            (_, Parsed::Cohort { .. }) => return Err(mismatch("cohort")),
            (_, Parsed::Buffered(_)) => return Err(mismatch("buffered contribution")),
        }
        Ok(())
    }

    /// Employees (with state or erased) restored so far.
    pub fn employees(&self) -> usize {
        self.employees.len()
    }

    /// The clock found, if any.
    pub fn clock(&self) -> Option<&Clock> {
        self.clock.as_ref()
    }

    /// Builds the state into `engine`, which must be fresh (nothing applied yet). `topics` are
    /// the task's input topics now: a clock written for other topics gives no positions (the
    /// restored state is used, nothing is skipped, and the caller is told by `false`).
    pub fn finish(self, engine: &mut Engine, topics: &[String]) -> bool {
        let Restorer {
            clock,
            employees,
            teams,
            cohorts,
            buffered,
            population,
            figures,
            ..
        } = self;
        let same_topics = clock.as_ref().is_none_or(|c| c.topics == topics);
        // Group state written in the other mode (with the repartition stage, or without) is
        // another set of groups: it is not restored.
        let same_mode = clock
            .as_ref()
            .is_none_or(|c| c.publish == engine.publish.is_some());
        let (teams, cohorts, buffered) = if same_mode {
            (teams, cohorts, buffered)
        } else {
            Default::default()
        };
        let mut ahead = Ahead {
            clock: clock
                .as_ref()
                .filter(|_| same_topics)
                .map_or_else(Vec::new, |c| c.through.clone()),
            max: vec![i64::MIN; topics.len()],
            passed: vec![false; topics.len()],
            ..Ahead::default()
        };
        for (i, m) in ahead.max.iter_mut().enumerate() {
            *m = ahead.clock.get(i).copied().unwrap_or(i64::MIN);
        }
        if let Some(c) = &clock {
            engine.watermark = c.watermark;
            // Idle employees were last looked for on the watermark's day.
            engine.idle_checked = crate::time::day_of(c.watermark);
            engine.max_event_time = c.max_event_time;
            if same_mode {
                engine.groups.restore_clock(c.groups_evaluated_through);
                engine.stage.erased = c.erased_members.iter().copied().collect();
            }
            // The stage's clock and source positions mean what they meant only for the same
            // inputs in the same mode.
            if same_mode && same_topics {
                engine.stage.watermark = c.stage_watermark;
                if c.sources.len() == engine.stage.sources.len() {
                    engine.stage.sources = c.sources.clone();
                }
                engine.stage.highest = c.highest.iter().copied().collect();
            }
            engine.last_clock = Some(c.clone());
        }
        let positions = |t: Vec<i64>| if same_topics { t } else { Vec::new() };
        if let Some((through, acc)) = population {
            let through = positions(through);
            ahead.note(&through);
            ahead.population = through;
            engine.pop.acc = acc;
        }
        if let Some((closed, f, gaps)) = figures.filter(|_| engine.pop.local) {
            let calendar = engine.ctx.rules.calendar.clone();
            engine.pop.restore(closed, f, gaps, &calendar);
        }
        // Groups in key order: a day's close evaluates teams in id order whatever their
        // positions, but their positions are then the same on every restore.
        let mut teams: Vec<_> = teams.into_iter().collect();
        teams.sort_unstable_by_key(|t| t.0);
        let mut released: HashMap<u128, Ts> = HashMap::new();
        for (k, g) in teams {
            let through = positions(g.through);
            let is_ahead = ahead.note(&through);
            if is_ahead {
                ahead.teams.insert(k, through.clone());
            }
            released.insert(k, g.released);
            engine
                .stage
                .restored_groups
                .insert(k, (through, g.released));
            engine
                .groups
                .restore_team(g.group, g.extra.filter(|_| is_ahead));
        }
        let mut cohorts: Vec<_> = cohorts.into_iter().collect();
        cohorts.sort_unstable_by_key(|c| c.0);
        for (k, g) in cohorts {
            let through = positions(g.through);
            if ahead.note(&through) {
                ahead.cohorts.insert(k, through.clone());
            }
            released.insert(k, g.released);
            engine
                .stage
                .restored_groups
                .insert(k, (through, g.released));
            // Stall deadlines up to the stage's time then were handled (format 1: the
            // engine's watermark).
            let handled = if g.released == Ts::MAX {
                engine.watermark
            } else {
                g.released
            };
            engine.groups.restore_cohort(g.group, g.extra, handled);
        }
        // Waiting contributions, but those their group's record shows applied already.
        for (k, c) in buffered {
            let applied = c
                .group_key()
                .and_then(|g| released.get(&g))
                .is_some_and(|&r| c.at < r);
            if !applied {
                engine.stage.buffer.insert(
                    k,
                    super::stage::Waiting {
                        c: Box::new(c),
                        written: true,
                    },
                );
            }
        }
        let dues_version = engine.dues_version;
        // Employees in the map's order: where a slot sits changes nothing but which of two
        // timers due at the same instant fires first (outputs about different employees).
        let experiments = std::sync::Arc::clone(&engine.ctx.rules);
        engine.slots.reserve(employees.len());
        engine.index.reserve(engine.index.len() + employees.len());
        for (k, entry) in employees {
            match *entry {
                Entry::Erased(through) => {
                    let through = positions(through);
                    if ahead.note(&through) {
                        ahead.employees.insert(k, through);
                    }
                    engine.erased.insert(super::employee_fp(k));
                }
                Entry::Evicted(through) => {
                    // No state as of `through`: if that is ahead of the clock, the input
                    // before it is skipped for the employee (it was held, then evicted).
                    let through = positions(through);
                    if ahead.note(&through) {
                        ahead.employees.insert(k, through);
                    }
                    engine.evicted_marks.push(k);
                }
                Entry::Employee {
                    through,
                    subject,
                    points,
                    state: restored,
                } => {
                    let through = positions(through);
                    if ahead.note(&through) {
                        ahead.employees.insert(k, through);
                    }
                    let points: Box<[f64]> = experiments
                        .experiment_list
                        .iter()
                        .map(|e| {
                            points
                                .iter()
                                .find(|(id, _)| *id == e.id)
                                .map_or(f64::NAN, |p| p.1)
                        })
                        .collect();
                    // Every deadline up to the checkpoint's watermark was handled before it.
                    let not_before = engine.watermark.saturating_add(1);
                    let subject = subject.into_boxed_str();
                    let state = match restored {
                        Restored::Packed {
                            flags,
                            seen_day,
                            due,
                            dues,
                            bytes,
                        } if dues == dues_version => {
                            // Kept as bytes until needed (see `FORMAT`).
                            let stub = EmployeeState {
                                flags,
                                seen_day,
                                ..Default::default()
                            };
                            let slot = engine.alloc_slot(k, subject, points, stub);
                            engine.slots[slot as usize].packed = Some(bytes);
                            engine.schedule(slot, due.map(|d| d.max(not_before)));
                            continue;
                        }
                        Restored::Packed {
                            flags,
                            seen_day,
                            bytes,
                            ..
                        } => EmployeeState::from_bytes(&bytes).unwrap_or_else(|| {
                            engine.corrupt_states += 1;
                            EmployeeState {
                                flags,
                                seen_day,
                                ..Default::default()
                            }
                        }),
                        Restored::Full(state) => state,
                    };
                    let slot = engine.alloc_slot(k, subject, points, state);
                    let sl = &mut engine.slots[slot as usize];
                    sl.dues = Dues::of(&engine.ctx.rules, &sl.state);
                    engine.reschedule(slot, Some(not_before));
                }
            }
        }
        let anything_ahead = !(ahead.employees.is_empty()
            && ahead.teams.is_empty()
            && ahead.cohorts.is_empty()
            && ahead.population.is_empty());
        if !ahead.clock.is_empty() || anything_ahead {
            engine.ahead = Some(Box::new(ahead));
        }
        same_topics
    }
}

fn kind_name(kind: u8) -> &'static str {
    match kind {
        CLOCK => "clock",
        POPULATION => "population",
        FIGURES => "figures",
        EMPLOYEE => "employee",
        TEAM => "team",
        _ => "cohort",
    }
}

/// The changelog key of an employee's record, as the engine writes it (for tools and tests).
pub fn employee_record_key(
    employee_id: &str,
    pseudonymizer: Option<&super::Pseudonymizer>,
) -> Vec<u8> {
    let k = match pseudonymizer {
        Some(p) => xxhash_rust::xxh3::xxh3_128_with_secret(
            employee_id.as_bytes(),
            &p.fingerprint_secret()[..],
        ),
        None => xxhash_rust::xxh3::xxh3_128(employee_id.as_bytes()),
    };
    key(EMPLOYEE, k)
}

/// What a record is: `clock`, `employee`, `erased`, `team` or `cohort` (`tombstone` for none).
pub fn record_kind(value: Option<&[u8]>) -> Result<&'static str, RecordError> {
    let Some(v) = value else {
        return Ok("tombstone");
    };
    Ok(match decode_body(v)? {
        Parsed::Clock(_) => "clock",
        Parsed::Employee { .. } => "employee",
        Parsed::Erased { .. } => "erased",
        Parsed::Team { .. } => "team",
        Parsed::Cohort { .. } => "cohort",
        Parsed::Buffered(_) => "buffered",
        Parsed::Evicted { .. } => "evicted",
        Parsed::Population { .. } => "population",
        Parsed::Figures { .. } => "figures",
    })
}

impl Engine {
    /// Whether the restored state holds the input at `pos` already (read before the restored
    /// checkpoint): for inputs that are not events — the repartition topic's records — which
    /// the task then skips. (Events go through [`Engine::apply_at`].)
    pub fn restored_holds(&mut self, pos: (usize, i64)) -> bool {
        let Some(a) = &mut self.ahead else {
            return false;
        };
        let holds = before(pos.1, &a.clock, pos.0);
        if a.passed(pos) {
            self.ahead = None;
            self.groups.end_restore();
        }
        holds
    }
}
