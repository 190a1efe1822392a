//! `[rules.*]`: the numbers of every rule in docs/contract.md §4, with the contract's defaults, and the
//! checks that name the key at fault.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{
    invalid, positive, ratio, whole_days, ActionCfg, ActionKind, Audience, ConfigError, Dur,
};
use crate::time::DAY;

fn a(kind: ActionKind, content: &str, minutes: u32, audience: Audience) -> ActionCfg {
    ActionCfg::new(kind, content, minutes, audience)
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Rules {
    /// Default cooldown: a rule fires at most once per subject per cooldown.
    pub cooldown: Dur,
    /// Severity of a single employee rule by its weight: `high` from this weight …
    pub severity_high_from: u32,
    /// … `medium` from this one, `low` below.
    pub severity_medium_from: u32,
    pub collaboration_decline: CollaborationDecline,
    pub recognition_withdrawal: RecognitionWithdrawal,
    pub pulse_shortening: PulseShortening,
    pub checkin_lapse: CheckinLapse,
    pub feedback_unacknowledged: FeedbackUnacknowledged,
    pub passive_goals: PassiveGoals,
    pub learning_abandonment: LearningAbandonment,
    pub learning_confusion: LearningConfusion,
    pub onboarding_friction: OnboardingFriction,
    pub mobility_frustration: MobilityFrustration,
    pub performance_dip: PerformanceDip,
    pub attrition_risk: AttritionRisk,
    pub cohort_onboarding_stall: CohortOnboardingStall,
    pub team_training_completion_low: TeamTrainingCompletionLow,
    pub team_checkin_drop: TeamCheckinDrop,
    pub team_sentiment_shift: TeamSentimentShift,
    pub follow_up: FollowUp,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            cooldown: Dur::days(14),
            severity_high_from: 20,
            severity_medium_from: 10,
            collaboration_decline: Default::default(),
            recognition_withdrawal: Default::default(),
            pulse_shortening: Default::default(),
            checkin_lapse: Default::default(),
            feedback_unacknowledged: Default::default(),
            passive_goals: Default::default(),
            learning_abandonment: Default::default(),
            learning_confusion: Default::default(),
            onboarding_friction: Default::default(),
            mobility_frustration: Default::default(),
            performance_dip: Default::default(),
            attrition_risk: Default::default(),
            cohort_onboarding_stall: Default::default(),
            team_training_completion_low: Default::default(),
            team_checkin_drop: Default::default(),
            team_sentiment_shift: Default::default(),
            follow_up: Default::default(),
        }
    }
}

/// Declares a rule's settings struct: the fields every rule has (`enabled`, `weight`, an
/// optional `cooldown`, `action`) and its own numbers, with their defaults.
macro_rules! rule_settings {
    (
        $(#[$doc:meta])* $name:ident { weight: $w:expr, action: $act:expr $(,)? }
        { $( $(#[$fdoc:meta])* $field:ident : $ty:ty = $def:expr ),* $(,)? }
    ) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Serialize, Deserialize)]
        #[serde(deny_unknown_fields, default)]
        pub struct $name {
            pub enabled: bool,
            /// Weight in the attrition risk score; also the trigger's `risk_score`.
            pub weight: u32,
            #[serde(skip_serializing_if = "Option::is_none")]
            pub cooldown: Option<Dur>,
            $( $(#[$fdoc])* pub $field: $ty, )*
            pub action: ActionCfg,
        }

        impl Default for $name {
            fn default() -> Self {
                $name { enabled: true, weight: $w, cooldown: None, $( $field: $def, )* action: $act }
            }
        }
    };
}

rule_settings! {
    /// Mean daily `messages + meetings` over `recent_window` below `ratio` x the mean over the
    /// `baseline_window` just before it.
    CollaborationDecline { weight: 25, action: a(ActionKind::MicroLesson, "reconnect-with-your-network", 5, Audience::Employee) }
    {
        recent_window: Dur = Dur::days(14),
        baseline_window: Dur = Dur::days(56),
        ratio: f64 = 0.5,
        /// History needed (first rollup to the evaluated day).
        min_history: Dur = Dur::days(70),
        min_baseline_mean: f64 = 5.0,
    }
}

rule_settings! {
    /// No `recognition.*` for `quiet_window`, while the `prior_window` before had at least
    /// `min_prior`.
    RecognitionWithdrawal { weight: 15, action: a(ActionKind::MicroMentoringInvite, "recognition-peer-mentoring", 5, Audience::Employee) }
    {
        quiet_window: Dur = Dur::days(30),
        prior_window: Dur = Dur::days(90),
        min_prior: u32 = 3,
    }
}

rule_settings! {
    /// On a pulse response, with at least `min_earlier` responses in the `lookback` before the
    /// latest `latest`: their mean word count < `word_ratio` x that of the up-to-`max_earlier`
    /// responses before them, or the latest score <= that earlier mean score - `score_drop`.
    PulseShortening { weight: 15, action: a(ActionKind::ManagerCoaching, "pulse-conversation-guide", 7, Audience::Manager) }
    {
        lookback: Dur = Dur::days(180),
        latest: u32 = 2,
        min_earlier: u32 = 3,
        max_earlier: u32 = 5,
        word_ratio: f64 = 0.5,
        score_drop: f64 = 3.0,
    }
}

rule_settings! {
    /// `consecutive_misses` check-ins in a row missed: skipped, or not completed `grace` after
    /// `due_at`.
    CheckinLapse { weight: 15, action: a(ActionKind::ManagerCoaching, "checkin-rhythm-coaching", 7, Audience::Manager) }
    {
        consecutive_misses: u32 = 2,
        grace: Dur = Dur::hours(72),
    }
}

rule_settings! {
    /// At least `min_unacknowledged` pieces of feedback received within `window` of each other,
    /// each unacknowledged `ack_within` after receipt.
    FeedbackUnacknowledged { weight: 10, action: a(ActionKind::MicroLesson, "feedback-habits", 5, Audience::Employee) }
    {
        ack_within: Dur = Dur::days(7),
        window: Dur = Dur::days(30),
        min_unacknowledged: u32 = 2,
    }
}

rule_settings! {
    /// At least `min_passive` `goal.updated` with delta 0 within `window`, and none positive.
    PassiveGoals { weight: 10, action: a(ActionKind::MicroLesson, "goal-setting-basics", 5, Audience::Employee) }
    {
        window: Dur = Dur::days(30),
        min_passive: u32 = 3,
    }
}

rule_settings! {
    /// `learning.module_abandoned` with `before_assessment: true`, or a started module with
    /// neither completion nor abandonment within `open_for`.
    LearningAbandonment { weight: 5, action: a(ActionKind::MicroLesson, "remediation/{module_id}", 5, Audience::Employee) }
    {
        open_for: Dur = Dur::days(14),
    }
}

rule_settings! {
    /// At least `min_failed_searches` searches with no result clicked within `window`, or at
    /// least `min_replays` replays of one module within `window`. `action.content_id` is used
    /// for replays (`{module_id}` filled), `search_content_id` for failed searches.
    LearningConfusion { weight: 5, action: a(ActionKind::MicroLesson, "explainer/{module_id}", 5, Audience::Employee) }
    {
        window: Dur = Dur::days(7),
        min_failed_searches: u32 = 3,
        min_replays: u32 = 3,
        search_content_id: String = "finding-learning-content".to_string(),
    }
}

rule_settings! {
    /// Within `onboarding_window` of the first onboarding event: a task started and not
    /// completed within `task_open_for`, or at least `min_clarifications` clarification requests
    /// within `clarification_window`.
    OnboardingFriction { weight: 10, action: a(ActionKind::MicroLesson, "onboarding-guide", 5, Audience::Employee) }
    {
        onboarding_window: Dur = Dur::days(30),
        task_open_for: Dur = Dur::hours(72),
        min_clarifications: u32 = 3,
        clarification_window: Dur = Dur::days(7),
    }
}

rule_settings! {
    /// At least `min_views` posting views within `window` and no application among them, or a
    /// development plan or skills assessment abandoned.
    MobilityFrustration { weight: 20, action: a(ActionKind::MicroMentoringInvite, "internal-mobility-mentoring", 5, Audience::Employee) }
    {
        window: Dur = Dur::days(30),
        min_views: u32 = 3,
    }
}

rule_settings! {
    /// `consecutive_sprints` sprints in a row below `sprint_ratio` of target, or the task
    /// completion ratio over `recent_window` < `task_ratio` x that over the `baseline_window`
    /// before (evaluated as UTC days close, with `min_history` of task figures and at least
    /// `min_baseline_planned` tasks planned in the baseline).
    PerformanceDip { weight: 20, action: a(ActionKind::SkillRefresher, "focus-and-prioritisation-refresher", 7, Audience::Employee) }
    {
        sprint_ratio: f64 = 0.8,
        consecutive_sprints: u32 = 2,
        recent_window: Dur = Dur::days(14),
        baseline_window: Dur = Dur::days(56),
        task_ratio: f64 = 0.7,
        min_history: Dur = Dur::days(70),
        min_baseline_planned: u32 = 10,
    }
}

/// The attrition risk score: the sum of the weights of the distinct employee rules that fired in
/// the last `window` (capped at 100). Fires when it reaches `threshold`; `medium` from the
/// threshold, `high` from `high_from`. The action is chosen by the largest contribution:
/// `route` maps each rule to one of the three `actions`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AttritionRisk {
    pub enabled: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cooldown: Option<Dur>,
    pub window: Dur,
    pub threshold: u32,
    pub high_from: u32,
    pub route: BTreeMap<String, ActionKind>,
    pub actions: AttritionActions,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AttritionActions {
    pub skill_refresher: ActionCfg,
    pub manager_coaching: ActionCfg,
    pub micro_mentoring_invite: ActionCfg,
}

impl Default for AttritionActions {
    fn default() -> Self {
        AttritionActions {
            skill_refresher: a(
                ActionKind::SkillRefresher,
                "growth-skill-refresher",
                7,
                Audience::Employee,
            ),
            manager_coaching: a(
                ActionKind::ManagerCoaching,
                "stay-conversation-guide",
                7,
                Audience::Manager,
            ),
            micro_mentoring_invite: a(
                ActionKind::MicroMentoringInvite,
                "mentoring-circle-invite",
                5,
                Audience::Employee,
            ),
        }
    }
}

impl Default for AttritionRisk {
    fn default() -> Self {
        use ActionKind::*;
        let route = [
            ("collaboration_decline", MicroMentoringInvite),
            ("recognition_withdrawal", MicroMentoringInvite),
            ("mobility_frustration", MicroMentoringInvite),
            ("pulse_shortening", ManagerCoaching),
            ("checkin_lapse", ManagerCoaching),
            ("feedback_unacknowledged", ManagerCoaching),
            ("passive_goals", ManagerCoaching),
            ("performance_dip", SkillRefresher),
            ("onboarding_friction", SkillRefresher),
            ("learning_abandonment", SkillRefresher),
            ("learning_confusion", SkillRefresher),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        AttritionRisk {
            enabled: true,
            cooldown: None,
            window: Dur::days(30),
            threshold: 50,
            high_from: 75,
            route,
            actions: AttritionActions::default(),
        }
    }
}

/// Declares a group rule's settings struct: `enabled`, `weight` (the trigger's `risk_score`),
/// an optional `cooldown`, its numbers, and `action`.
macro_rules! group_settings {
    (
        $(#[$doc:meta])* $name:ident { weight: $w:expr, action: $act:expr $(,)? }
        { $( $(#[$fdoc:meta])* $field:ident : $ty:ty = $def:expr ),* $(,)? }
    ) => {
        rule_settings! { $(#[$doc])* $name { weight: $w, action: $act } { $( $(#[$fdoc])* $field: $ty = $def ),* } }
    };
}

group_settings! {
    /// Per cohort and task: at least `share` of the cohort's employees who started the task have
    /// it open longer than `open_for`.
    CohortOnboardingStall { weight: 10, action: a(ActionKind::ContentReview, "onboarding-task-review", 30, Audience::HrOps) }
    {
        open_for: Dur = Dur::hours(72),
        share: f64 = 0.3,
    }
}

group_settings! {
    /// Modules completed / modules started by the team over `window` below `ratio`, with at
    /// least `min_started` modules started.
    TeamTrainingCompletionLow { weight: 10, action: a(ActionKind::ContentReview, "team-learning-review", 30, Audience::LAndD) }
    {
        window: Dur = Dur::days(30),
        ratio: f64 = 0.6,
        min_started: u32 = 5,
    }
}

group_settings! {
    /// Completed check-ins per day over `recent_window` below `ratio` x the team's rate over the
    /// `baseline_window` before, with at least `min_baseline_completed` in the baseline.
    TeamCheckinDrop { weight: 10, action: a(ActionKind::ManagerCoaching, "team-checkin-rhythm", 15, Audience::Manager) }
    {
        recent_window: Dur = Dur::days(14),
        baseline_window: Dur = Dur::days(56),
        ratio: f64 = 0.6,
        min_baseline_completed: u32 = 5,
    }
}

group_settings! {
    /// Per team and theme: the share of negative `feedback.comment`s among the team's comments
    /// on the theme over `recent_window` is at least `points` percentage points above that share
    /// over the `baseline_window` before; each window needs `min_comments` on the theme. Themes
    /// are keyword lists (a keyword matches words that start with it); the sentiment lexicon is
    /// `lexicon` (a file), or the built-in one when empty.
    TeamSentimentShift { weight: 10, action: a(ActionKind::ManagerCoaching, "team-sentiment-conversation", 30, Audience::HrBusinessPartner) }
    {
        recent_window: Dur = Dur::days(30),
        baseline_window: Dur = Dur::days(90),
        points: f64 = 20.0,
        min_comments: u32 = 5,
        lexicon: String = String::new(),
        themes: BTreeMap<String, Vec<String>> = default_themes(),
    }
}

fn default_themes() -> BTreeMap<String, Vec<String>> {
    [
        (
            "workload",
            &[
                "workload",
                "overload",
                "overtime",
                "deadline",
                "burnout",
                "burned",
                "exhaust",
                "hours",
                "understaff",
                "too much work",
            ][..],
        ),
        (
            "growth",
            &["growth", "career", "learn", "develop", "skill", "stagnat"][..],
        ),
        (
            "promotion",
            &["promot", "raise", "level", "title", "advancement"][..],
        ),
        (
            "recognition",
            &[
                "recogni",
                "appreciat",
                "credit",
                "thank",
                "valued",
                "unnoticed",
            ][..],
        ),
        (
            "manager",
            &["manager", "boss", "lead", "supervisor", "micromanag"][..],
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect()))
    .collect()
}

/// The follow-up ladder: an ignored intervention (or none completed `no_completion_after` after
/// `deliver_by`) gets `office_hours` at escalation 1, then `manager` at escalation 2.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FollowUp {
    pub enabled: bool,
    pub no_completion_after: Dur,
    pub office_hours: ActionCfg,
    pub manager: ActionCfg,
}

impl Default for FollowUp {
    fn default() -> Self {
        FollowUp {
            enabled: true,
            no_completion_after: Dur::days(7),
            office_hours: a(
                ActionKind::OfficeHoursInvite,
                "office-hours",
                5,
                Audience::Employee,
            ),
            manager: a(
                ActionKind::ManagerCoaching,
                "follow-up-conversation",
                7,
                Audience::Manager,
            ),
        }
    }
}

fn cd(c: Option<Dur>, key: &str) -> Result<(), ConfigError> {
    match c {
        Some(d) => positive(d, &format!("{key}.cooldown")),
        None => Ok(()),
    }
}

fn at_least(v: u32, min: u32, key: &str) -> Result<(), ConfigError> {
    if v < min {
        Err(invalid(key, format!("must be at least {min}")))
    } else {
        Ok(())
    }
}

fn not_to_manager(action: &ActionCfg, key: &str) -> Result<(), ConfigError> {
    if action.kind == ActionKind::ManagerCoaching || action.audience == Audience::Manager {
        Err(invalid(
            key,
            "a learning rule's first action goes to the employee, never straight to a manager (the follow-up ladder reaches the manager at escalation 2)",
        ))
    } else {
        Ok(())
    }
}

const MAX_WINDOW_DAYS: i64 = 366;

fn span_days(parts: &[Dur], key: &str) -> Result<(), ConfigError> {
    let total: i64 = parts.iter().map(|d| d.ms() / DAY).sum();
    if total > MAX_WINDOW_DAYS {
        Err(invalid(
            key,
            format!("the windows may span at most {MAX_WINDOW_DAYS} days together"),
        ))
    } else {
        Ok(())
    }
}

impl Rules {
    pub fn validate(&self) -> Result<(), ConfigError> {
        positive(self.cooldown, "rules.cooldown")?;
        if self.severity_medium_from > self.severity_high_from {
            return Err(invalid(
                "rules.severity_medium_from",
                "must not be above rules.severity_high_from",
            ));
        }
        let k = |rule: &str, field: &str| format!("rules.{rule}.{field}");

        let c = &self.collaboration_decline;
        let p = "collaboration_decline";
        whole_days(c.recent_window, &k(p, "recent_window"))?;
        whole_days(c.baseline_window, &k(p, "baseline_window"))?;
        whole_days(c.min_history, &k(p, "min_history"))?;
        span_days(
            &[c.recent_window, c.baseline_window],
            &k(p, "baseline_window"),
        )?;
        ratio(c.ratio, &k(p, "ratio"))?;
        if c.min_history < Dur(c.recent_window.0 + c.baseline_window.0) {
            return Err(invalid(
                k(p, "min_history"),
                "must cover recent_window + baseline_window",
            ));
        }
        if !(c.min_baseline_mean.is_finite() && c.min_baseline_mean >= 0.0) {
            return Err(invalid(k(p, "min_baseline_mean"), "must be a number >= 0"));
        }
        c.action.validate(&k(p, "action"))?;
        cd(c.cooldown, &format!("rules.{p}"))?;

        let c = &self.recognition_withdrawal;
        let p = "recognition_withdrawal";
        positive(c.quiet_window, &k(p, "quiet_window"))?;
        positive(c.prior_window, &k(p, "prior_window"))?;
        at_least(c.min_prior, 1, &k(p, "min_prior"))?;
        c.action.validate(&k(p, "action"))?;
        cd(c.cooldown, &format!("rules.{p}"))?;

        let c = &self.pulse_shortening;
        let p = "pulse_shortening";
        positive(c.lookback, &k(p, "lookback"))?;
        at_least(c.latest, 1, &k(p, "latest"))?;
        at_least(c.min_earlier, 1, &k(p, "min_earlier"))?;
        if c.max_earlier < c.min_earlier || c.max_earlier > 50 || c.latest > 50 {
            return Err(invalid(
                k(p, "max_earlier"),
                "must be between min_earlier and 50 (and latest at most 50)",
            ));
        }
        ratio(c.word_ratio, &k(p, "word_ratio"))?;
        if !(c.score_drop.is_finite() && c.score_drop > 0.0) {
            return Err(invalid(k(p, "score_drop"), "must be a number > 0"));
        }
        c.action.validate(&k(p, "action"))?;
        cd(c.cooldown, &format!("rules.{p}"))?;

        let c = &self.checkin_lapse;
        let p = "checkin_lapse";
        if c.consecutive_misses == 0 || c.consecutive_misses > 50 {
            return Err(invalid(
                k(p, "consecutive_misses"),
                "must be between 1 and 50",
            ));
        }
        positive(c.grace, &k(p, "grace"))?;
        c.action.validate(&k(p, "action"))?;
        cd(c.cooldown, &format!("rules.{p}"))?;

        let c = &self.feedback_unacknowledged;
        let p = "feedback_unacknowledged";
        positive(c.ack_within, &k(p, "ack_within"))?;
        positive(c.window, &k(p, "window"))?;
        at_least(c.min_unacknowledged, 1, &k(p, "min_unacknowledged"))?;
        c.action.validate(&k(p, "action"))?;
        cd(c.cooldown, &format!("rules.{p}"))?;

        let c = &self.passive_goals;
        let p = "passive_goals";
        positive(c.window, &k(p, "window"))?;
        at_least(c.min_passive, 1, &k(p, "min_passive"))?;
        c.action.validate(&k(p, "action"))?;
        cd(c.cooldown, &format!("rules.{p}"))?;

        let c = &self.learning_abandonment;
        let p = "learning_abandonment";
        positive(c.open_for, &k(p, "open_for"))?;
        c.action.validate(&k(p, "action"))?;
        not_to_manager(&c.action, &k(p, "action"))?;
        cd(c.cooldown, &format!("rules.{p}"))?;

        let c = &self.learning_confusion;
        let p = "learning_confusion";
        positive(c.window, &k(p, "window"))?;
        at_least(c.min_failed_searches, 1, &k(p, "min_failed_searches"))?;
        at_least(c.min_replays, 1, &k(p, "min_replays"))?;
        c.action.validate(&k(p, "action"))?;
        not_to_manager(&c.action, &k(p, "action"))?;
        cd(c.cooldown, &format!("rules.{p}"))?;

        let c = &self.onboarding_friction;
        let p = "onboarding_friction";
        positive(c.onboarding_window, &k(p, "onboarding_window"))?;
        positive(c.task_open_for, &k(p, "task_open_for"))?;
        positive(c.clarification_window, &k(p, "clarification_window"))?;
        at_least(c.min_clarifications, 1, &k(p, "min_clarifications"))?;
        c.action.validate(&k(p, "action"))?;
        cd(c.cooldown, &format!("rules.{p}"))?;

        let c = &self.mobility_frustration;
        let p = "mobility_frustration";
        positive(c.window, &k(p, "window"))?;
        at_least(c.min_views, 1, &k(p, "min_views"))?;
        c.action.validate(&k(p, "action"))?;
        cd(c.cooldown, &format!("rules.{p}"))?;

        let c = &self.performance_dip;
        let p = "performance_dip";
        ratio(c.sprint_ratio, &k(p, "sprint_ratio"))?;
        ratio(c.task_ratio, &k(p, "task_ratio"))?;
        at_least(c.consecutive_sprints, 1, &k(p, "consecutive_sprints"))?;
        whole_days(c.recent_window, &k(p, "recent_window"))?;
        whole_days(c.baseline_window, &k(p, "baseline_window"))?;
        whole_days(c.min_history, &k(p, "min_history"))?;
        span_days(
            &[c.recent_window, c.baseline_window],
            &k(p, "baseline_window"),
        )?;
        c.action.validate(&k(p, "action"))?;
        cd(c.cooldown, &format!("rules.{p}"))?;

        let c = &self.attrition_risk;
        let p = "attrition_risk";
        positive(c.window, &k(p, "window"))?;
        if c.threshold == 0 || c.threshold > 100 {
            return Err(invalid(k(p, "threshold"), "must be between 1 and 100"));
        }
        if c.high_from < c.threshold || c.high_from > 100 {
            return Err(invalid(
                k(p, "high_from"),
                "must be between threshold and 100",
            ));
        }
        for (rule, kind) in &c.route {
            if !crate::catalog::RuleId::EMPLOYEE
                .iter()
                .any(|r| r.as_str() == rule)
            {
                return Err(invalid(
                    format!("rules.{p}.route.{rule}"),
                    "is not an employee rule",
                ));
            }
            if !matches!(
                kind,
                ActionKind::SkillRefresher
                    | ActionKind::ManagerCoaching
                    | ActionKind::MicroMentoringInvite
            ) {
                return Err(invalid(
                    format!("rules.{p}.route.{rule}"),
                    "must be skill_refresher, manager_coaching or micro_mentoring_invite",
                ));
            }
        }
        c.actions
            .skill_refresher
            .validate(&k(p, "actions.skill_refresher"))?;
        c.actions
            .manager_coaching
            .validate(&k(p, "actions.manager_coaching"))?;
        c.actions
            .micro_mentoring_invite
            .validate(&k(p, "actions.micro_mentoring_invite"))?;
        cd(c.cooldown, &format!("rules.{p}"))?;

        let c = &self.cohort_onboarding_stall;
        let p = "cohort_onboarding_stall";
        positive(c.open_for, &k(p, "open_for"))?;
        ratio(c.share, &k(p, "share"))?;
        c.action.validate(&k(p, "action"))?;
        cd(c.cooldown, &format!("rules.{p}"))?;

        let c = &self.team_training_completion_low;
        let p = "team_training_completion_low";
        whole_days(c.window, &k(p, "window"))?;
        span_days(&[c.window], &k(p, "window"))?;
        ratio(c.ratio, &k(p, "ratio"))?;
        at_least(c.min_started, 1, &k(p, "min_started"))?;
        c.action.validate(&k(p, "action"))?;
        cd(c.cooldown, &format!("rules.{p}"))?;

        let c = &self.team_checkin_drop;
        let p = "team_checkin_drop";
        whole_days(c.recent_window, &k(p, "recent_window"))?;
        whole_days(c.baseline_window, &k(p, "baseline_window"))?;
        span_days(
            &[c.recent_window, c.baseline_window],
            &k(p, "baseline_window"),
        )?;
        ratio(c.ratio, &k(p, "ratio"))?;
        at_least(c.min_baseline_completed, 1, &k(p, "min_baseline_completed"))?;
        c.action.validate(&k(p, "action"))?;
        cd(c.cooldown, &format!("rules.{p}"))?;

        let c = &self.team_sentiment_shift;
        let p = "team_sentiment_shift";
        whole_days(c.recent_window, &k(p, "recent_window"))?;
        whole_days(c.baseline_window, &k(p, "baseline_window"))?;
        span_days(
            &[c.recent_window, c.baseline_window],
            &k(p, "baseline_window"),
        )?;
        if !(c.points.is_finite() && c.points > 0.0 && c.points <= 100.0) {
            return Err(invalid(
                k(p, "points"),
                "must be between 0 and 100 percentage points",
            ));
        }
        at_least(c.min_comments, 1, &k(p, "min_comments"))?;
        if c.themes.is_empty() || c.themes.len() > 32 {
            return Err(invalid(k(p, "themes"), "needs between 1 and 32 themes"));
        }
        for (theme, words) in &c.themes {
            if words.is_empty() || words.iter().any(|w| w.trim().is_empty()) {
                return Err(invalid(
                    format!("rules.{p}.themes.{theme}"),
                    "needs at least one non-empty keyword",
                ));
            }
        }
        if !c.lexicon.is_empty() {
            crate::rules::sentiment::Lexicon::load(&c.lexicon)
                .map_err(|e| invalid(k(p, "lexicon"), e))?;
        }
        c.action.validate(&k(p, "action"))?;
        cd(c.cooldown, &format!("rules.{p}"))?;

        let c = &self.follow_up;
        let p = "follow_up";
        positive(c.no_completion_after, &k(p, "no_completion_after"))?;
        c.office_hours.validate(&k(p, "office_hours"))?;
        not_to_manager(&c.office_hours, &k(p, "office_hours"))?;
        c.manager.validate(&k(p, "manager"))?;
        Ok(())
    }
}
