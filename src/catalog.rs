//! The rule catalog's ids (docs/contract.md §4): which rules exist, in catalog order, and their
//! names. Below the configuration and the rules, which both name rules.

use serde::Serialize;

/// Rule ids, in catalog order. The discriminant indexes per-rule tables.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, serde::Deserialize,
)]
#[repr(u8)]
pub enum RuleId {
    CollaborationDecline = 0,
    RecognitionWithdrawal,
    PulseShortening,
    CheckinLapse,
    FeedbackUnacknowledged,
    PassiveGoals,
    LearningAbandonment,
    LearningConfusion,
    OnboardingFriction,
    MobilityFrustration,
    PerformanceDip,
    AttritionRisk,
    CohortOnboardingStall,
    TeamTrainingCompletionLow,
    TeamCheckinDrop,
    TeamSentimentShift,
}

// The employee rules are exactly those listed before `attrition_risk`.
const _: () = assert!(matches!(RuleId::ALL[11], RuleId::AttritionRisk));

impl RuleId {
    pub const ALL: [RuleId; 16] = [
        RuleId::CollaborationDecline,
        RuleId::RecognitionWithdrawal,
        RuleId::PulseShortening,
        RuleId::CheckinLapse,
        RuleId::FeedbackUnacknowledged,
        RuleId::PassiveGoals,
        RuleId::LearningAbandonment,
        RuleId::LearningConfusion,
        RuleId::OnboardingFriction,
        RuleId::MobilityFrustration,
        RuleId::PerformanceDip,
        RuleId::AttritionRisk,
        RuleId::CohortOnboardingStall,
        RuleId::TeamTrainingCompletionLow,
        RuleId::TeamCheckinDrop,
        RuleId::TeamSentimentShift,
    ];
    /// The rules that speak of one employee and count towards the attrition risk.
    pub const EMPLOYEE: &'static [RuleId] = Self::ALL.split_at(11).0;
    pub const COUNT: usize = Self::ALL.len();

    pub fn as_str(self) -> &'static str {
        match self {
            RuleId::CollaborationDecline => "collaboration_decline",
            RuleId::RecognitionWithdrawal => "recognition_withdrawal",
            RuleId::PulseShortening => "pulse_shortening",
            RuleId::CheckinLapse => "checkin_lapse",
            RuleId::FeedbackUnacknowledged => "feedback_unacknowledged",
            RuleId::PassiveGoals => "passive_goals",
            RuleId::LearningAbandonment => "learning_abandonment",
            RuleId::LearningConfusion => "learning_confusion",
            RuleId::OnboardingFriction => "onboarding_friction",
            RuleId::MobilityFrustration => "mobility_frustration",
            RuleId::PerformanceDip => "performance_dip",
            RuleId::AttritionRisk => "attrition_risk",
            RuleId::CohortOnboardingStall => "cohort_onboarding_stall",
            RuleId::TeamTrainingCompletionLow => "team_training_completion_low",
            RuleId::TeamCheckinDrop => "team_checkin_drop",
            RuleId::TeamSentimentShift => "team_sentiment_shift",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn is_learning(self) -> bool {
        matches!(
            self,
            RuleId::LearningAbandonment | RuleId::LearningConfusion
        )
    }
}
