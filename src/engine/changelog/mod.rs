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

mod checkpoint;
mod restore;

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::{Dues, EmployeeState, Engine, Keys, Parts};
use crate::event::Event;
use crate::rules::group::{Cohort, Contribution, GroupRecord, Team};
use crate::rules::population::{Accumulator, Figures};
use crate::rules::presence::Gaps;
use crate::time::Ts;
pub use restore::{Ahead, Restorer};

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
