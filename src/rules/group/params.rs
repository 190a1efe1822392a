//! The team and cohort rules' parameters, from the settings.

use super::*;

#[derive(Debug, Clone)]
pub struct Params {
    pub min_group: usize,
    pub stall: Option<Stall>,
    pub training: Option<Training>,
    pub checkins: Option<Checkins>,
    pub sentiment: Option<Sentiment>,
    pub cooldown: [Ts; 4],
    /// `calendar.non_working_days`: left out of every group window too.
    pub calendar: Days,
    /// `population.min_window_share`.
    pub min_share: f64,
    /// `population.relative`.
    pub relative: bool,
}

impl Params {
    /// The days the team rings hold (training, check-ins, each theme): their windows, and room
    /// to reach back over excluded days.
    pub(super) fn ring_lens(&self) -> (usize, usize, usize) {
        let len = |d: i64| (d.max(1) + EXCLUSION_MARGIN_DAYS) as usize;
        (
            len(self.training.as_ref().map_or(1, |t| t.days)),
            len(self.checkins.as_ref().map_or(1, |c| c.recent + c.baseline)),
            len(self.sentiment.as_ref().map_or(1, |s| s.recent + s.baseline)),
        )
    }

    /// What the group windows leave out: the calendar (a member's own time off is theirs).
    pub(super) fn presence(&self) -> Presence<'_> {
        Presence::new(&self.calendar, &[], Presence::no_gaps())
    }
}

#[derive(Debug, Clone)]
pub struct Stall {
    pub open_for: Ts,
    pub share: f64,
}

#[derive(Debug, Clone)]
pub struct Training {
    pub days: i64,
    pub ratio: f64,
    pub min_started: u64,
}

#[derive(Debug, Clone)]
pub struct Checkins {
    pub recent: i64,
    pub baseline: i64,
    pub ratio: f64,
    pub min_baseline: u64,
}

#[derive(Debug, Clone)]
pub struct Sentiment {
    pub recent: i64,
    pub baseline: i64,
    pub points: f64,
    pub min_comments: u64,
    pub themes: Vec<(String, Vec<String>)>,
    pub lexicon: Lexicon,
}

impl Params {
    pub fn from(s: &Settings) -> Params {
        let r = &s.rules;
        let cd = |c: Option<crate::config::Dur>| c.unwrap_or(r.cooldown).ms();
        let c = &r.cohort_onboarding_stall;
        let stall = c.enabled.then(|| Stall {
            open_for: c.open_for.ms(),
            share: c.share,
        });
        let t = &r.team_training_completion_low;
        let training = t.enabled.then(|| Training {
            days: t.window.ms() / DAY,
            ratio: t.ratio,
            min_started: t.min_started as u64,
        });
        let k = &r.team_checkin_drop;
        let checkins = k.enabled.then(|| Checkins {
            recent: k.recent_window.ms() / DAY,
            baseline: k.baseline_window.ms() / DAY,
            ratio: k.ratio,
            min_baseline: k.min_baseline_completed as u64,
        });
        let m = &r.team_sentiment_shift;
        let sentiment = m.enabled.then(|| Sentiment {
            recent: m.recent_window.ms() / DAY,
            baseline: m.baseline_window.ms() / DAY,
            points: m.points,
            min_comments: m.min_comments as u64,
            themes: m
                .themes
                .iter()
                // Keywords lower-cased once here: comments' words are.
                .map(|(k, v)| (k.clone(), v.iter().map(|w| w.to_lowercase()).collect()))
                .collect(),
            // validate() has loaded it once already; a file that vanished since reads as built-in.
            lexicon: Lexicon::load(&m.lexicon).unwrap_or_else(|_| Lexicon::builtin()),
        });
        Params {
            min_group: s.privacy.min_group_size as usize,
            stall,
            training,
            checkins,
            sentiment,
            cooldown: [
                cd(c.cooldown),
                cd(t.cooldown),
                cd(k.cooldown),
                cd(m.cooldown),
            ],
            // (Checked by `Settings::validate`.)
            calendar: s.calendar.days().unwrap_or_default(),
            min_share: s.population.min_window_share,
            relative: s.population.relative,
        }
    }

    pub(super) fn cooldown(&self, rule: RuleId) -> Ts {
        match rule {
            RuleId::CohortOnboardingStall => self.cooldown[0],
            RuleId::TeamTrainingCompletionLow => self.cooldown[1],
            RuleId::TeamCheckinDrop => self.cooldown[2],
            _ => self.cooldown[3],
        }
    }

    /// The key of the team an event will update: `None` when the event has no team or no team
    /// rule is on.
    pub fn team_key(&self, ev: &Event<'_>) -> Option<u128> {
        if !self.any_team_rule() {
            return None;
        }
        Some(group_key(ev.team_id.as_deref()?))
    }

    pub(super) fn any_team_rule(&self) -> bool {
        self.training.is_some() || self.checkins.is_some() || self.sentiment.is_some()
    }
}
