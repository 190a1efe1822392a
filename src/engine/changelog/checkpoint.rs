//! The checkpoint writer: what changed in each store since the last checkpoint, as records, in
//! the order a restore needs — the population, the groups, the group stage's waiting
//! contributions, the employees and their marks, then the clock (see the module above).

use super::*;

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
        let mut w = Written {
            // The population first: the share's position may be ahead of an employee's,
            // never behind (see `Ahead::parts`).
            population: self.write_population(through, out),
            groups: self.write_groups(through, out),
            // After the groups: a restored contribution their records show applied is dropped
            // (see `Restorer::finish`), so a cut between the two loses or doubles nothing.
            buffered: self.write_buffered(out),
            employees: self.write_employees(through, out),
            ..Written::default()
        };
        (w.evicted, w.erased) = self.write_marks(through, out);
        w.clock = self.write_clock(topics, through, w.total() > 0, out);
        w
    }

    /// The population's figures (a task that is its own population) before the share, so a
    /// share restored ahead of them re-closes no day into them twice.
    fn write_population(&mut self, through: &[i64], out: &mut Vec<Record>) -> usize {
        let mut n = 0;
        if self.pop.local && self.pop.closed != self.pop.written_closed {
            n += 1;
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
            n += 1;
            out.push(Record {
                key: POPULATION_KEY.to_vec(),
                value: Some(encode(&ValueRef::Population {
                    through,
                    acc: &self.pop.acc,
                })),
            });
        }
        n
    }

    /// The teams and cohorts that changed. Team records carry the day evaluation had reached
    /// (read back only when the record turns out to be ahead of its clock).
    fn write_groups(&mut self, through: &[i64], out: &mut Vec<Record>) -> usize {
        let mut n = 0;
        let evaluated_through = self.groups.evaluated_through();
        let released = self.stage.watermark;
        self.groups.drain_dirty(|g| {
            n += 1;
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
        n
    }

    /// The group stage's contributions waiting since the last checkpoint, and tombstones of
    /// those released since.
    fn write_buffered(&mut self, out: &mut Vec<Record>) -> usize {
        let mut n = 0;
        if self.stage.unwritten > 0 {
            for (&k, waiting) in self.stage.buffer.iter_mut().filter(|(_, x)| !x.written) {
                n += 1;
                out.push(Record {
                    key: buffered_key(k),
                    value: Some(encode(&ValueRef::Buffered(&waiting.c))),
                });
                waiting.written = true;
            }
            self.stage.unwritten = 0;
        }
        for k in std::mem::take(&mut self.stage.released) {
            n += 1;
            out.push(Record {
                key: buffered_key(k),
                value: None,
            });
        }
        n
    }

    /// The employees whose state changed: subject, experiment points, state (still packed if
    /// it was never unpacked since a restore).
    fn write_employees(&mut self, through: &[i64], out: &mut Vec<Record>) -> usize {
        let mut n = 0;
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
            n += 1;
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
        n
    }

    /// Eviction marks and their tombstones, and erasure marks: (evicted, erased) records.
    fn write_marks(&mut self, through: &[i64], out: &mut Vec<Record>) -> (usize, usize) {
        let (mut evicted, mut erased) = (0, 0);
        // Evicted at the last checkpoint, and its clock is written since: the mark can go.
        for k in std::mem::take(&mut self.evicted_marks) {
            if self.index.get(k).is_some() {
                continue;
            }
            evicted += 1;
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
            evicted += 1;
            out.push(Record {
                key: key(EMPLOYEE, k),
                value: Some(encode(&ValueRef::Evicted { through })),
            });
            self.evicted_marks.push(k);
        }
        for k in std::mem::take(&mut self.dirty_erased) {
            erased += 1;
            out.push(Record {
                key: key(EMPLOYEE, k),
                value: Some(encode(&ValueRef::Erased { through })),
            });
        }
        (evicted, erased)
    }

    /// The clock, last: written when anything else was (`changed`), or the position or time
    /// moved.
    fn write_clock(
        &mut self,
        topics: &[String],
        through: &[i64],
        changed: bool,
        out: &mut Vec<Record>,
    ) -> usize {
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
        if !changed && self.last_clock.as_ref() == Some(&clock) {
            return 0;
        }
        out.push(Record {
            key: CLOCK_KEY.to_vec(),
            value: Some(encode(&ValueRef::Clock(&clock))),
        });
        self.last_clock = Some(clock);
        1
    }
}
