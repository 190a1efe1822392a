//! The restorer: a changelog partition's records, last per key, into an engine — each store's
//! part in the order a checkpoint wrote them ([`Restorer::finish`]) — and what the input read
//! again must skip because the restored state holds it already ([`Ahead`]).

use super::*;

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

    /// Nothing restored yet, after the clock `clock` (of the same input topics), for `inputs`
    /// input topics.
    fn after(clock: Option<&Clock>, inputs: usize) -> Ahead {
        let clock = clock.map_or_else(Vec::new, |c| c.through.clone());
        let max = (0..inputs)
            .map(|i| clock.get(i).copied().unwrap_or(i64::MIN))
            .collect();
        Ahead {
            clock,
            max,
            passed: vec![false; inputs],
            ..Ahead::default()
        }
    }

    /// Whether the input read again has anything to skip.
    fn holds_anything(&self) -> bool {
        !(self.clock.is_empty()
            && self.employees.is_empty()
            && self.teams.is_empty()
            && self.cohorts.is_empty()
            && self.population.is_empty())
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
    teams: Teams,
    cohorts: Cohorts,
    buffered: std::collections::BTreeMap<crate::engine::stage::OrderKey, Contribution>,
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

fn order_key_of(rest: &[u8]) -> Option<crate::engine::stage::OrderKey> {
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
        let mut ahead = Ahead::after(clock.as_ref().filter(|_| same_topics), topics.len());
        if let Some(c) = &clock {
            engine.restore_clock(c, same_mode, same_topics);
        }
        // Positions mean what they meant only for the same input topics.
        let positions = |t: Vec<i64>| if same_topics { t } else { Vec::new() };
        engine.restore_population(population, figures, &positions, &mut ahead);
        let released = engine.restore_groups(teams, cohorts, &positions, &mut ahead);
        engine.restore_buffered(buffered, &released);
        engine.restore_employees(employees, &positions, &mut ahead);
        if ahead.holds_anything() {
            engine.ahead = Some(Box::new(ahead));
        }
        same_topics
    }
}

/// Restored teams (with the day evaluation had reached) and cohorts (with their stall timers).
type Teams = HashMap<u128, GroupIn<Option<i64>, Team>, FixedHash>;
type Cohorts = HashMap<u128, GroupIn<Vec<(Ts, String)>, Cohort>, FixedHash>;

/// Positions of restored records, as they count for the input topics now (none when the
/// checkpoint was written for other topics).
type Positions<'a> = &'a dyn Fn(Vec<i64>) -> Vec<i64>;

/// Each store's part of a restore, in the order [`Restorer::finish`] takes them.
impl Engine {
    /// The clock: the engine's time, the group stage's clock and sources, the groups' day.
    fn restore_clock(&mut self, c: &Clock, same_mode: bool, same_topics: bool) {
        self.watermark = c.watermark;
        // Idle employees were last looked for on the watermark's day.
        self.idle_checked = crate::time::day_of(c.watermark);
        self.max_event_time = c.max_event_time;
        if same_mode {
            self.groups.restore_clock(c.groups_evaluated_through);
            self.stage.erased = c.erased_members.iter().copied().collect();
        }
        // The stage's clock and source positions mean what they meant only for the same
        // inputs in the same mode.
        if same_mode && same_topics {
            self.stage.watermark = c.stage_watermark;
            if c.sources.len() == self.stage.sources.len() {
                self.stage.sources = c.sources.clone();
            }
            self.stage.highest = c.highest.iter().copied().collect();
        }
        self.last_clock = Some(c.clone());
    }

    /// The task's population share and (a task that is its own population) the figures.
    fn restore_population(
        &mut self,
        share: Option<(Vec<i64>, Accumulator)>,
        figures: Option<(Option<i64>, Figures, Gaps)>,
        positions: Positions<'_>,
        ahead: &mut Ahead,
    ) {
        if let Some((through, acc)) = share {
            let through = positions(through);
            ahead.note(&through);
            ahead.population = through;
            self.pop.acc = acc;
        }
        if let Some((closed, f, gaps)) = figures.filter(|_| self.pop.local) {
            let calendar = self.ctx.rules.calendar.clone();
            self.pop.restore(closed, f, gaps, &calendar);
        }
    }

    /// Teams and cohorts, in key order: a day's close evaluates teams in id order whatever
    /// their positions, but their positions are then the same on every restore. Returns each
    /// group's released time (what its record shows applied).
    fn restore_groups(
        &mut self,
        teams: Teams,
        cohorts: Cohorts,
        positions: Positions<'_>,
        ahead: &mut Ahead,
    ) -> HashMap<u128, Ts> {
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
            self.stage.restored_groups.insert(k, (through, g.released));
            self.groups
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
            self.stage.restored_groups.insert(k, (through, g.released));
            // Stall deadlines up to the stage's time then were handled (format 1: the
            // engine's watermark).
            let handled = if g.released == Ts::MAX {
                self.watermark
            } else {
                g.released
            };
            self.groups.restore_cohort(g.group, g.extra, handled);
        }
        released
    }

    /// The group stage's waiting contributions, but those their group's record shows applied
    /// already.
    fn restore_buffered(
        &mut self,
        buffered: std::collections::BTreeMap<crate::engine::stage::OrderKey, Contribution>,
        released: &HashMap<u128, Ts>,
    ) {
        for (k, c) in buffered {
            let applied = c
                .group_key()
                .and_then(|g| released.get(&g))
                .is_some_and(|&r| c.at < r);
            if !applied {
                self.stage.buffer.insert(
                    k,
                    crate::engine::stage::Waiting {
                        c: Box::new(c),
                        written: true,
                    },
                );
            }
        }
    }

    /// The employees, in the map's order: where a slot sits changes nothing but which of two
    /// timers due at the same instant fires first (outputs about different employees).
    /// Erasure and eviction marks, and each employee's state, kept packed when its deadlines
    /// were written under the same rules.
    fn restore_employees(
        &mut self,
        employees: HashMap<u128, Box<Entry>, FixedHash>,
        positions: Positions<'_>,
        ahead: &mut Ahead,
    ) {
        let dues_version = self.dues_version;
        let experiments = std::sync::Arc::clone(&self.ctx.rules);
        self.slots.reserve(employees.len());
        self.index.reserve(self.index.len() + employees.len());
        for (k, entry) in employees {
            match *entry {
                Entry::Erased(through) => {
                    let through = positions(through);
                    if ahead.note(&through) {
                        ahead.employees.insert(k, through);
                    }
                    self.erased.insert(crate::engine::employee_fp(k));
                }
                Entry::Evicted(through) => {
                    // No state as of `through`: if that is ahead of the clock, the input
                    // before it is skipped for the employee (it was held, then evicted).
                    let through = positions(through);
                    if ahead.note(&through) {
                        ahead.employees.insert(k, through);
                    }
                    self.evicted_marks.push(k);
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
                    let not_before = self.watermark.saturating_add(1);
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
                            let slot = self.alloc_slot(k, subject, points, stub);
                            self.slots[slot as usize].packed = Some(bytes);
                            self.schedule(slot, due.map(|d| d.max(not_before)));
                            continue;
                        }
                        Restored::Packed {
                            flags,
                            seen_day,
                            bytes,
                            ..
                        } => EmployeeState::from_bytes(&bytes).unwrap_or_else(|| {
                            self.corrupt_states += 1;
                            EmployeeState {
                                flags,
                                seen_day,
                                ..Default::default()
                            }
                        }),
                        Restored::Full(state) => state,
                    };
                    let slot = self.alloc_slot(k, subject, points, state);
                    let sl = &mut self.slots[slot as usize];
                    sl.dues = Dues::of(&self.ctx.rules, &sl.state);
                    self.reschedule(slot, Some(not_before));
                }
            }
        }
    }
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
