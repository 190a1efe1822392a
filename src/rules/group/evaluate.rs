//! The team and cohort rules' judgements: a cohort's onboarding stall when its deadline
//! passes, and the team rules at each day's close, each against `privacy.min_group_size` and
//! on the days the group's windows keep.

use super::*;

impl Groups {
    pub fn next_due(&self, p: &Params) -> Option<Ts> {
        let stall = self.stall_timers.first().map(|x| x.0);
        let day = (p.any_team_rule() && !self.teams.is_empty())
            .then(|| self.evaluated_through.map(|d| day_start(d + 2)))
            .flatten();
        match (stall, day) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Handles every group deadline at or before `now`, in time order.
    /// `pop`: the population's figures (for population-relative thresholds) and the days
    /// it was away.
    pub fn on_timer(
        &mut self,
        p: &Params,
        now: Ts,
        pop: Option<&Population>,
        out: &mut Vec<GroupFire>,
    ) {
        let closed = day_of(now) - 1;
        loop {
            let stall_due = self.stall_timers.first().map(|x| x.0).filter(|&d| d <= now);
            let day_due = self
                .evaluated_through
                .filter(|&d| d < closed && p.any_team_rule())
                .map(|d| day_start(d + 2));
            match (stall_due, day_due) {
                (None, None) => break,
                (Some(s), d) if d.is_none_or(|d| s <= d) => {
                    if let Some((due, n, task)) = self.stall_timers.pop_first() {
                        self.evaluate_stall(p, due, n, &task, out);
                    }
                }
                _ => {
                    let d = self.evaluated_through.unwrap_or(closed) + 1;
                    // After a long gap only the days the windows can still see matter.
                    let d = d.max(closed - 400);
                    self.evaluate_day(p, d, pop, out);
                    self.evaluated_through = Some(d);
                }
            }
        }
    }

    pub(super) fn evaluate_stall(
        &mut self,
        p: &Params,
        due: Ts,
        n: u32,
        task: &str,
        out: &mut Vec<GroupFire>,
    ) {
        let Some(stall) = p.stall.as_ref() else {
            return;
        };
        let Some(c) = self.cohorts.get_mut(n as usize) else {
            return;
        };
        let Some(starts) = c.tasks.get(task) else {
            return;
        };
        let size = c.members.count(day_of(due));
        let starters = starts.len();
        let stalled = starts
            .iter()
            .filter(|s| {
                p.presence().after(s.started, stall.open_for) <= due
                    && s.completed.is_none_or(|c| c > due)
            })
            .count();
        if size < p.min_group
            || starters < p.min_group
            || (stalled as f64) < stall.share * starters as f64
        {
            return;
        }
        let suppressed = cooled(
            &mut c.fired,
            RuleId::CohortOnboardingStall,
            task,
            due,
            p.cooldown(RuleId::CohortOnboardingStall),
        );
        if !c.dirty {
            c.dirty = true;
            self.dirty_cohorts.push(n);
        }
        out.push(GroupFire {
            rule: RuleId::CohortOnboardingStall,
            scope: Scope::Cohort,
            subject: c.id.to_string(),
            key: task.to_string(),
            at: due,
            reasons: vec![Reason::new("share_with_task_open", stalled as f64 / starters as f64, stall.share).detail(format!(
                "task {task}: {stalled} of the {starters} employees of the cohort who started it have had it open more than {} h",
                stall.open_for / HOUR
            ))],
            suppressed,
        });
    }

    pub(super) fn evaluate_day(
        &mut self,
        p: &Params,
        day: i64,
        pop: Option<&Population>,
        out: &mut Vec<GroupFire>,
    ) {
        let at = day_start(day + 1);
        let calendar = pop.map_or(&p.calendar, |x| &x.group_calendar);
        let pres = Presence::new(calendar, &[], Presence::no_gaps())
            .with_figures(pop.map(|x| &x.figures).filter(|_| p.relative));
        // A non-working day adds nothing to judge (its members are still pruned, below).
        let judged = !pres.off(day);
        let enough = |present: i64, len: i64| enough_days(present, len, p.min_share);
        if self.by_id.len() != self.teams.len() {
            // New teams since the last close: appended, then a stable sort (which finds the
            // sorted run already there), the order a full sort by id would give.
            self.by_id
                .extend(self.by_id.len() as u32..self.teams.len() as u32);
            let teams = &self.teams;
            self.by_id
                .sort_by(|&a, &b| teams[a as usize].id.cmp(&teams[b as usize].id));
        }
        for k in 0..self.by_id.len() {
            let n = self.by_id[k];
            let tm = &mut self.teams[n as usize];
            if tm.evaluated_through.is_some_and(|e| day <= e) {
                // Restored from a record written after this day's close: evaluated already.
                continue;
            }
            if day % 7 == 0 && tm.members.prune(day) && !tm.dirty {
                tm.dirty = true;
                self.dirty_teams.push(n);
            }
            let size = tm.members.count(day);
            if !judged || size < p.min_group {
                continue;
            }
            let (tw, cw, sw) = p.ring_lens();
            let lens = |tm: &Team| {
                (
                    tm.started.len(),
                    tm.checkins.len(),
                    tm.themes.first().map(|t| t.0.len()),
                )
            };
            if lens(tm) != (tw as i64, cw as i64, tm.themes.first().map(|_| sw as i64)) {
                // Restored from a version with other windows (or without the margin).
                tm.started.set_len(tw);
                tm.completed.set_len(tw);
                tm.checkins.set_len(cw);
                for (neg, all) in &mut tm.themes {
                    neg.set_len(sw);
                    all.set_len(sw);
                }
                if !tm.dirty {
                    tm.dirty = true;
                    self.dirty_teams.push(n);
                }
            }
            let mut fires: Vec<(RuleId, String, Vec<Reason>)> = Vec::new();
            if let Some(t) = &p.training {
                let (from, _) = present_window(day, t.days, tm.started.horizon(), &pres, None);
                let ((started, days), (completed, _)) = (
                    tm.started.sum_present(from, day, &pres, None),
                    tm.completed.sum_present(from, day, &pres, None),
                );
                if enough(days, t.days)
                    && started >= t.min_started
                    && (completed as f64) < t.ratio * started as f64
                {
                    fires.push((
                        RuleId::TeamTrainingCompletionLow,
                        String::new(),
                        vec![Reason::new("module_completion_ratio", completed as f64 / started as f64, t.ratio)
                            .window_days(t.days as u32)
                            .detail(format!("{completed} modules completed, {started} started by the team ({size} people)"))],
                    ));
                }
            }
            if let Some(c) = &p.checkins {
                let floor = tm.checkins.horizon().max(tm.first_day as i64);
                let (rf, _) = present_window(day, c.recent, floor, &pres, None);
                let (bf, _) = present_window(rf - 1, c.baseline, floor, &pres, None);
                let history = day - tm.first_day as i64 + 1 >= c.recent + c.baseline;
                let ((recent, rdays), (base, bdays)) = (
                    tm.checkins.sum_present(rf, day, &pres, None),
                    tm.checkins.sum_present(bf, rf - 1, &pres, None),
                );
                let (rr, br) = (
                    recent as f64 / rdays.max(1) as f64,
                    base as f64 / bdays.max(1) as f64,
                );
                if history
                    && enough(rdays, c.recent)
                    && enough(bdays, c.baseline)
                    && base >= c.min_baseline
                    && rr < c.ratio * br
                {
                    // Population-relative: completed check-ins per active employee over the
                    // same days, recent against before.
                    let population = pres.figures().and_then(|f| {
                        // (Without the team's own: its check-ins, its members' days.)
                        f.ratio(
                            (bf, rf, day),
                            &pres,
                            None,
                            false,
                            |d| (d.checkins_completed, d.active as u64),
                            Subject {
                                sums: [
                                    (recent, size as u64 * rdays as u64),
                                    (base, size as u64 * bdays as u64),
                                ],
                                members: size as u64,
                            },
                        )
                    });
                    let ratio = scaled(c.ratio, population);
                    if rr < ratio * br {
                        let mut reasons =
                            vec![Reason::new("completed_checkins_per_day", rr, ratio * br)
                                .baseline(br)
                                .window_days(c.recent as u32)
                                .detail(format!(
                            "{recent} completed in the last {} days, {base} in the {} days before",
                            c.recent, c.baseline
                        ))];
                        if let Some(r) = population {
                            reasons.push(
                                Reason::new("population_checkin_ratio", r, 1.0)
                                    .window_days(c.recent as u32)
                                    .detail(population_detail(
                                        "completed check-ins per active employee",
                                        r,
                                    )),
                            );
                        }
                        fires.push((RuleId::TeamCheckinDrop, String::new(), reasons));
                    }
                }
            }
            if let Some(s) = &p.sentiment {
                let floor = tm.themes.first().map_or(day, |(n, _)| n.horizon());
                let (rf, _) = present_window(day, s.recent, floor, &pres, None);
                let (bf, _) = present_window(rf - 1, s.baseline, floor, &pres, None);
                for (ti, (theme, _)) in s.themes.iter().enumerate() {
                    let Some((neg, all)) = tm.themes.get(ti) else {
                        continue;
                    };
                    let ((rn, rdays), (ra, _)) = (
                        neg.sum_present(rf, day, &pres, None),
                        all.sum_present(rf, day, &pres, None),
                    );
                    let ((bn, bdays), (ba, _)) = (
                        neg.sum_present(bf, rf - 1, &pres, None),
                        all.sum_present(bf, rf - 1, &pres, None),
                    );
                    if !enough(rdays, s.recent)
                        || !enough(bdays, s.baseline)
                        || ra < s.min_comments
                        || ba < s.min_comments
                    {
                        continue;
                    }
                    let (rs, bs) = (100.0 * rn as f64 / ra as f64, 100.0 * bn as f64 / ba as f64);
                    if rs - bs >= s.points {
                        fires.push((
                            RuleId::TeamSentimentShift,
                            theme.clone(),
                            vec![Reason::new("negative_comment_share_pct", rs, bs + s.points)
                                .baseline(round2(bs))
                                .window_days(s.recent as u32)
                                .detail(format!(
                                    "theme {theme}: {rn} of {ra} comments negative in the last {} days, {bn} of {ba} in the {} days before",
                                    s.recent, s.baseline
                                ))],
                        ));
                    }
                }
            }
            if !fires.is_empty() && !tm.dirty {
                tm.dirty = true;
                self.dirty_teams.push(n);
            }
            for (rule, key, reasons) in fires {
                let suppressed = cooled(&mut tm.fired, rule, &key, at, p.cooldown(rule));
                out.push(GroupFire {
                    rule,
                    scope: Scope::Team,
                    subject: tm.id.to_string(),
                    key,
                    at,
                    reasons,
                    suppressed,
                });
            }
        }
    }
}
