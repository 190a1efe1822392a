//! The input contract (docs/contract.md §2): bytes in either encoding become one typed [`Event`], or a
//! [`Reject`] that names the dead-letter reason and the field at fault. Nothing here panics on any
//! input; both decoders are fed arbitrary bytes by property tests.

mod json;
mod proto;

use std::borrow::Cow;
use std::fmt;

use crate::time::{self, Ts};

pub use json::{decode_json, encode_json};
pub use proto::{decode_protobuf, encode_protobuf};

/// Generated protobuf types (`proto/momentd/v1/momentd.proto`).
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/momentd.v1.rs"));
}

/// Input encoding, from the `content-type` header or the configured default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    Json,
    Protobuf,
}

impl Encoding {
    /// The encoding a `content-type` header names; `None` for anything else.
    pub fn from_content_type(ct: &[u8]) -> Option<Encoding> {
        let ct = std::str::from_utf8(ct).ok()?;
        let base = ct.split(';').next().unwrap_or("").trim();
        match base {
            "application/json" => Some(Encoding::Json),
            "application/x-protobuf" | "application/protobuf" => Some(Encoding::Protobuf),
            _ => None,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Encoding::Json => "application/json",
            Encoding::Protobuf => "application/x-protobuf",
        }
    }
}

/// The dead-letter reasons of docs/contract.md §2, as they appear in the `momentd-error` header and in
/// metric labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ErrorCode {
    MalformedJson,
    MalformedProtobuf,
    SchemaViolation,
    UnknownType,
    KeyMismatch,
    TooLarge,
    TimestampOutOfRange,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 7] = [
        ErrorCode::MalformedJson,
        ErrorCode::MalformedProtobuf,
        ErrorCode::SchemaViolation,
        ErrorCode::UnknownType,
        ErrorCode::KeyMismatch,
        ErrorCode::TooLarge,
        ErrorCode::TimestampOutOfRange,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::MalformedJson => "malformed_json",
            ErrorCode::MalformedProtobuf => "malformed_protobuf",
            ErrorCode::SchemaViolation => "schema_violation",
            ErrorCode::UnknownType => "unknown_type",
            ErrorCode::KeyMismatch => "key_mismatch",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::TimestampOutOfRange => "timestamp_out_of_range",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an input was refused: the contract's code and a human-readable detail naming the field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{code}: {detail}")]
pub struct Reject {
    pub code: ErrorCode,
    pub detail: String,
}

impl Reject {
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> Reject {
        Reject {
            code,
            detail: detail.into(),
        }
    }
    fn schema(detail: impl Into<String>) -> Reject {
        Reject::new(ErrorCode::SchemaViolation, detail)
    }
}

/// Checks that do not depend on the encoding.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// `input.max_event_bytes`.
    pub max_event_bytes: usize,
    /// The wall clock events are judged against (events more than `max_future` ahead are out
    /// of range): now in `run`, now or `--now` in `replay`; `None`: no such check.
    pub now: Option<Ts>,
    pub max_future: Ts,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_event_bytes: 64 * 1024,
            now: None,
            max_future: time::DAY,
        }
    }
}

/// Decodes one message value in the given encoding, checks its size and, when the message has a
/// key, that the key equals `employee_id`.
pub fn decode<'a>(
    bytes: &'a [u8],
    encoding: Encoding,
    key: Option<&[u8]>,
    limits: &Limits,
) -> Result<Event<'a>, Reject> {
    if bytes.len() > limits.max_event_bytes {
        return Err(Reject::new(
            ErrorCode::TooLarge,
            format!(
                "value is {} bytes, over input.max_event_bytes = {}",
                bytes.len(),
                limits.max_event_bytes
            ),
        ));
    }
    let ev = match encoding {
        Encoding::Json => decode_json(bytes, limits)?,
        Encoding::Protobuf => decode_protobuf(bytes, limits)?,
    };
    if let Some(key) = key {
        if key != ev.employee_id.as_bytes() {
            return Err(Reject::new(
                ErrorCode::KeyMismatch,
                format!(
                    "message key ({} bytes) differs from employee_id ({} bytes)",
                    key.len(),
                    ev.employee_id.len()
                ),
            ));
        }
    }
    Ok(ev)
}

/// One validated interaction event. Strings borrow from the input where the encoding allows.
#[derive(Debug, Clone, PartialEq)]
pub struct Event<'a> {
    pub event_id: Cow<'a, str>,
    pub employee_id: Cow<'a, str>,
    pub occurred_at: Ts,
    pub team_id: Option<Cow<'a, str>>,
    pub cohort_id: Option<Cow<'a, str>>,
    pub manager_id: Option<Cow<'a, str>>,
    pub kind: Kind<'a>,
}

impl Event<'_> {
    /// A copy that owns its strings (for tests, benches and buffering).
    pub fn into_owned(self) -> Event<'static> {
        fn o(c: Cow<'_, str>) -> Cow<'static, str> {
            Cow::Owned(c.into_owned())
        }
        Event {
            event_id: o(self.event_id),
            employee_id: o(self.employee_id),
            occurred_at: self.occurred_at,
            team_id: self.team_id.map(o),
            cohort_id: self.cohort_id.map(o),
            manager_id: self.manager_id.map(o),
            kind: self.kind.into_owned(),
        }
    }
}

macro_rules! kinds {
    ($( $variant:ident $({ $($field:ident : $fty:ty),* $(,)? })? => $name:literal ),* $(,)?) => {
        /// The event catalog of docs/contract.md §2 with each type's attributes, validated.
        #[derive(Debug, Clone, PartialEq)]
        pub enum Kind<'a> {
            $( $variant $({ $($field: $fty),* })? ),*
        }

        impl Kind<'_> {
            /// The contract's `type` string (also the metric label).
            pub fn type_name(&self) -> &'static str {
                match self { $( Kind::$variant { .. } => $name ),* }
            }
            /// Every type name in the catalog.
            pub const TYPE_NAMES: &'static [&'static str] = &[$($name),*];
        }
    };
}

kinds! {
    TaskStarted { task_id: Cow<'a, str> } => "onboarding.task_started",
    TaskCompleted { task_id: Cow<'a, str> } => "onboarding.task_completed",
    ClarificationRequested => "hr.clarification_requested",
    ModuleStarted { module_id: Cow<'a, str> } => "learning.module_started",
    ModuleCompleted { module_id: Cow<'a, str> } => "learning.module_completed",
    ContentReplayed { module_id: Cow<'a, str> } => "learning.content_replayed",
    ModuleAbandoned { module_id: Cow<'a, str>, progress_pct: f64, before_assessment: bool } => "learning.module_abandoned",
    AssessmentCompleted { module_id: Cow<'a, str>, score_pct: f64, passed: bool } => "learning.assessment_completed",
    ContentSearched { results_clicked: u32 } => "learning.content_searched",
    CheckinScheduled { checkin_id: Cow<'a, str>, due_at: Ts } => "checkin.scheduled",
    CheckinCompleted { checkin_id: Cow<'a, str> } => "checkin.completed",
    CheckinSkipped { checkin_id: Cow<'a, str> } => "checkin.skipped",
    GoalUpdated { goal_id: Cow<'a, str>, progress_delta_pct: f64 } => "goal.updated",
    FeedbackReceived { feedback_id: Cow<'a, str> } => "feedback.received",
    FeedbackAcknowledged { feedback_id: Cow<'a, str> } => "feedback.acknowledged",
    PostingViewed { posting_id: Cow<'a, str> } => "mobility.posting_viewed",
    Applied { posting_id: Cow<'a, str> } => "mobility.applied",
    RoleChanged { promotion: bool } => "mobility.role_changed",
    PlanAbandoned { plan_id: Cow<'a, str> } => "development.plan_abandoned",
    SkillsAssessmentAbandoned { assessment_id: Cow<'a, str> } => "skills.assessment_abandoned",
    CollabActivity { messages: u32, meetings: u32 } => "collab.activity",
    RecognitionGiven => "recognition.given",
    RecognitionReceived => "recognition.received",
    WorkTasks { completed: u32, planned: u32 } => "work.tasks",
    SprintClosed { points_done: f64, points_target: f64 } => "work.sprint_closed",
    PulseResponse { survey_id: Cow<'a, str>, score: Option<f64>, word_count: Option<u32> } => "survey.pulse_response",
    FeedbackComment { text: Cow<'a, str> } => "feedback.comment",
    ConsentUpdated { individual_processing: bool } => "consent.updated",
    Erased => "employee.erased",
    Exited { voluntary: bool } => "employee.exited",
    InterventionDelivered { trigger_id: Cow<'a, str> } => "intervention.delivered",
    InterventionCompleted { trigger_id: Cow<'a, str> } => "intervention.completed",
    InterventionIgnored { trigger_id: Cow<'a, str> } => "intervention.ignored",
    TimeOffRecorded { time_off_id: Cow<'a, str>, starts_on: i32, ends_on: i32 } => "time_off.recorded",
    TimeOffCancelled { time_off_id: Cow<'a, str> } => "time_off.cancelled",
}

impl Kind<'_> {
    pub fn into_owned(self) -> Kind<'static> {
        fn o(c: Cow<'_, str>) -> Cow<'static, str> {
            Cow::Owned(c.into_owned())
        }
        use Kind::*;
        match self {
            TaskStarted { task_id } => TaskStarted {
                task_id: o(task_id),
            },
            TaskCompleted { task_id } => TaskCompleted {
                task_id: o(task_id),
            },
            ClarificationRequested => ClarificationRequested,
            ModuleStarted { module_id } => ModuleStarted {
                module_id: o(module_id),
            },
            ModuleCompleted { module_id } => ModuleCompleted {
                module_id: o(module_id),
            },
            ContentReplayed { module_id } => ContentReplayed {
                module_id: o(module_id),
            },
            ModuleAbandoned {
                module_id,
                progress_pct,
                before_assessment,
            } => ModuleAbandoned {
                module_id: o(module_id),
                progress_pct,
                before_assessment,
            },
            AssessmentCompleted {
                module_id,
                score_pct,
                passed,
            } => AssessmentCompleted {
                module_id: o(module_id),
                score_pct,
                passed,
            },
            ContentSearched { results_clicked } => ContentSearched { results_clicked },
            CheckinScheduled { checkin_id, due_at } => CheckinScheduled {
                checkin_id: o(checkin_id),
                due_at,
            },
            CheckinCompleted { checkin_id } => CheckinCompleted {
                checkin_id: o(checkin_id),
            },
            CheckinSkipped { checkin_id } => CheckinSkipped {
                checkin_id: o(checkin_id),
            },
            GoalUpdated {
                goal_id,
                progress_delta_pct,
            } => GoalUpdated {
                goal_id: o(goal_id),
                progress_delta_pct,
            },
            FeedbackReceived { feedback_id } => FeedbackReceived {
                feedback_id: o(feedback_id),
            },
            FeedbackAcknowledged { feedback_id } => FeedbackAcknowledged {
                feedback_id: o(feedback_id),
            },
            PostingViewed { posting_id } => PostingViewed {
                posting_id: o(posting_id),
            },
            Applied { posting_id } => Applied {
                posting_id: o(posting_id),
            },
            RoleChanged { promotion } => RoleChanged { promotion },
            PlanAbandoned { plan_id } => PlanAbandoned {
                plan_id: o(plan_id),
            },
            SkillsAssessmentAbandoned { assessment_id } => SkillsAssessmentAbandoned {
                assessment_id: o(assessment_id),
            },
            CollabActivity { messages, meetings } => CollabActivity { messages, meetings },
            RecognitionGiven => RecognitionGiven,
            RecognitionReceived => RecognitionReceived,
            WorkTasks { completed, planned } => WorkTasks { completed, planned },
            SprintClosed {
                points_done,
                points_target,
            } => SprintClosed {
                points_done,
                points_target,
            },
            PulseResponse {
                survey_id,
                score,
                word_count,
            } => PulseResponse {
                survey_id: o(survey_id),
                score,
                word_count,
            },
            FeedbackComment { text } => FeedbackComment { text: o(text) },
            ConsentUpdated {
                individual_processing,
            } => ConsentUpdated {
                individual_processing,
            },
            Erased => Erased,
            Exited { voluntary } => Exited { voluntary },
            InterventionDelivered { trigger_id } => InterventionDelivered {
                trigger_id: o(trigger_id),
            },
            InterventionCompleted { trigger_id } => InterventionCompleted {
                trigger_id: o(trigger_id),
            },
            InterventionIgnored { trigger_id } => InterventionIgnored {
                trigger_id: o(trigger_id),
            },
            TimeOffRecorded {
                time_off_id,
                starts_on,
                ends_on,
            } => TimeOffRecorded {
                time_off_id: o(time_off_id),
                starts_on,
                ends_on,
            },
            TimeOffCancelled { time_off_id } => TimeOffCancelled {
                time_off_id: o(time_off_id),
            },
        }
    }
}

/// One attribute value as either decoder found it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum AttrVal<'a> {
    Str(Cow<'a, str>),
    Num(f64),
    Bool(bool),
    /// An array or object: never a valid attribute of the catalog.
    Nested,
}

impl AttrVal<'_> {
    fn kind(&self) -> &'static str {
        match self {
            AttrVal::Str(_) => "a string",
            AttrVal::Num(_) => "a number",
            AttrVal::Bool(_) => "a boolean",
            AttrVal::Nested => "an array or object",
        }
    }
}

/// Where the type-specific checks read attributes from: only the attributes a type needs are
/// looked at, so unknown ones are ignored and a decoder need not build a record of all of them.
pub(crate) trait AttrSource<'a> {
    /// Removes and returns the named attribute (`None` when absent or null).
    fn take(&mut self, name: &str) -> Option<AttrVal<'a>>;
}

impl<'a, T: AttrSource<'a>> AttrSource<'a> for &mut T {
    fn take(&mut self, name: &str) -> Option<AttrVal<'a>> {
        (**self).take(name)
    }
}

fn wrong_type(name: &str, expected: &str, v: &AttrVal<'_>) -> Reject {
    Reject::schema(format!(
        "attrs.{name}: expected {expected}, found {}",
        v.kind()
    ))
}

fn get_str<'a>(a: &mut impl AttrSource<'a>, name: &str) -> Result<Option<Cow<'a, str>>, Reject> {
    match a.take(name) {
        None => Ok(None),
        Some(AttrVal::Str(s)) => Ok(Some(s)),
        Some(v) => Err(wrong_type(name, "a string", &v)),
    }
}

fn get_num<'a>(a: &mut impl AttrSource<'a>, name: &str) -> Result<Option<f64>, Reject> {
    match a.take(name) {
        None => Ok(None),
        Some(AttrVal::Num(n)) => Ok(Some(n)),
        Some(v) => Err(wrong_type(name, "a number", &v)),
    }
}

fn get_bool<'a>(a: &mut impl AttrSource<'a>, name: &str) -> Result<Option<bool>, Reject> {
    match a.take(name) {
        None => Ok(None),
        Some(AttrVal::Bool(b)) => Ok(Some(b)),
        Some(v) => Err(wrong_type(name, "true or false", &v)),
    }
}

/// The top-level fields, as either decoder found them.
pub(crate) struct RawEvent<'a, A> {
    event_id: Option<Cow<'a, str>>,
    employee_id: Option<Cow<'a, str>>,
    occurred_at: Option<Cow<'a, str>>,
    kind: Option<Cow<'a, str>>,
    team_id: Option<Cow<'a, str>>,
    cohort_id: Option<Cow<'a, str>>,
    manager_id: Option<Cow<'a, str>>,
    attrs: A,
}

const MAX_ID_CHARS: usize = 128;

fn id_field<'a>(v: Option<Cow<'a, str>>, field: &str) -> Result<Cow<'a, str>, Reject> {
    checked_id(v, "", field)
}

/// An id of 1..=128 characters; `prefix` + `field` name it in the error (formatted only then).
fn checked_id<'a>(
    v: Option<Cow<'a, str>>,
    prefix: &str,
    field: &str,
) -> Result<Cow<'a, str>, Reject> {
    match v {
        None => Err(Reject::schema(format!("{prefix}{field}: required"))),
        Some(s) => {
            // Byte length bounds the character count: count characters only when it matters.
            let n = if s.len() <= MAX_ID_CHARS {
                s.len()
            } else {
                s.chars().count()
            };
            if n == 0 {
                Err(Reject::schema(format!(
                    "{prefix}{field}: must not be empty"
                )))
            } else if n > MAX_ID_CHARS {
                Err(Reject::schema(format!(
                    "{prefix}{field}: {n} characters, at most {MAX_ID_CHARS} allowed"
                )))
            } else {
                Ok(s)
            }
        }
    }
}

fn opt_id<'a>(v: Option<Cow<'a, str>>, field: &str) -> Result<Option<Cow<'a, str>>, Reject> {
    match v {
        None => Ok(None),
        Some(s) if s.is_empty() => Ok(None),
        Some(s) => id_field(Some(s), field).map(Some),
    }
}

fn attr_id<'a>(a: &mut impl AttrSource<'a>, field: &str) -> Result<Cow<'a, str>, Reject> {
    checked_id(get_str(a, field)?, "attrs.", field)
}

fn req_bool<'a>(a: &mut impl AttrSource<'a>, field: &str) -> Result<bool, Reject> {
    get_bool(a, field)?
        .ok_or_else(|| Reject::schema(format!("attrs.{field}: required (true or false)")))
}

fn number_in(v: f64, field: &str, lo: f64, hi: f64) -> Result<f64, Reject> {
    if v.is_finite() && v >= lo && v <= hi {
        Ok(v)
    } else {
        Err(Reject::schema(format!(
            "attrs.{field}: {v} is outside {lo}..={hi}"
        )))
    }
}

fn req_number<'a>(
    a: &mut impl AttrSource<'a>,
    field: &str,
    lo: f64,
    hi: f64,
) -> Result<f64, Reject> {
    match get_num(a, field)? {
        None => Err(Reject::schema(format!("attrs.{field}: required number"))),
        Some(v) => number_in(v, field, lo, hi),
    }
}

fn count(v: f64, field: &str) -> Result<u32, Reject> {
    if v.is_finite() && v >= 0.0 && v.fract() == 0.0 && v <= u32::MAX as f64 {
        Ok(v as u32)
    } else {
        Err(Reject::schema(format!(
            "attrs.{field}: {v} is not an integer >= 0"
        )))
    }
}

fn req_count<'a>(a: &mut impl AttrSource<'a>, field: &str) -> Result<u32, Reject> {
    match get_num(a, field)? {
        None => Err(Reject::schema(format!(
            "attrs.{field}: required integer >= 0"
        ))),
        Some(v) => count(v, field),
    }
}

fn timestamp(s: &str, field: &str, limits: &Limits) -> Result<Ts, Reject> {
    let ts = time::parse_rfc3339(s).ok_or_else(|| {
        Reject::schema(format!(
            "{field}: not an RFC 3339 timestamp with offset ({:?})",
            truncate(s, 40)
        ))
    })?;
    if ts < time::MIN_EVENT_TIME {
        return Err(Reject::new(
            ErrorCode::TimestampOutOfRange,
            format!("{field}: {} is before 2000-01-01", time::format_rfc3339(ts)),
        ));
    }
    if let Some(now) = limits.now {
        if ts > now.saturating_add(limits.max_future) {
            return Err(Reject::new(
                ErrorCode::TimestampOutOfRange,
                format!(
                    "{field}: {} is more than {} ahead of the wall clock",
                    time::format_rfc3339(ts),
                    humantime::format_duration(std::time::Duration::from_millis(
                        limits.max_future as u64
                    ))
                ),
            ));
        }
    }
    Ok(ts)
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

impl<'a, A: AttrSource<'a>> RawEvent<'a, A> {
    /// The checks both encodings share: required fields, lengths, time range, the type's
    /// attributes.
    pub(crate) fn validate(self, limits: &Limits) -> Result<Event<'a>, Reject> {
        let event_id = id_field(self.event_id, "event_id")?;
        let employee_id = id_field(self.employee_id, "employee_id")?;
        let occurred_at = match &self.occurred_at {
            None => return Err(Reject::schema("occurred_at: required")),
            Some(s) => timestamp(s, "occurred_at", limits)?,
        };
        let type_name = match self.kind {
            None => return Err(Reject::schema("type: required")),
            Some(t) => t,
        };
        let mut attrs = self.attrs;
        let kind = kind_from(&type_name, &mut attrs, limits)?;
        Ok(Event {
            event_id,
            employee_id,
            occurred_at,
            team_id: opt_id(self.team_id, "team_id")?,
            cohort_id: opt_id(self.cohort_id, "cohort_id")?,
            manager_id: opt_id(self.manager_id, "manager_id")?,
            kind,
        })
    }
}

/// The longest span one `time_off.recorded` may cover (docs/contract.md §2).
pub const MAX_TIME_OFF_DAYS: i32 = 366;

/// A required `YYYY-MM-DD` attribute, as a UTC day number.
fn req_date<'a>(a: &mut impl AttrSource<'a>, name: &str) -> Result<i32, Reject> {
    match &get_str(a, name)? {
        None => Err(Reject::schema(format!(
            "attrs.{name}: required (YYYY-MM-DD)"
        ))),
        Some(s) => time::parse_date(s).map(|d| d as i32).ok_or_else(|| {
            Reject::schema(format!(
                "attrs.{name}: {:?} is not a date (YYYY-MM-DD)",
                truncate(s, 40)
            ))
        }),
    }
}

fn kind_from<'a>(
    t: &str,
    a: &mut impl AttrSource<'a>,
    limits: &Limits,
) -> Result<Kind<'a>, Reject> {
    use Kind::*;
    Ok(match t {
        "onboarding.task_started" => TaskStarted {
            task_id: attr_id(a, "task_id")?,
        },
        "onboarding.task_completed" => TaskCompleted {
            task_id: attr_id(a, "task_id")?,
        },
        "hr.clarification_requested" => ClarificationRequested,
        "learning.module_started" => ModuleStarted {
            module_id: attr_id(a, "module_id")?,
        },
        "learning.module_completed" => ModuleCompleted {
            module_id: attr_id(a, "module_id")?,
        },
        "learning.content_replayed" => ContentReplayed {
            module_id: attr_id(a, "module_id")?,
        },
        "learning.module_abandoned" => ModuleAbandoned {
            module_id: attr_id(a, "module_id")?,
            progress_pct: req_number(a, "progress_pct", 0.0, 100.0)?,
            before_assessment: req_bool(a, "before_assessment")?,
        },
        "learning.assessment_completed" => AssessmentCompleted {
            module_id: attr_id(a, "module_id")?,
            score_pct: req_number(a, "score_pct", 0.0, 100.0)?,
            passed: req_bool(a, "passed")?,
        },
        "learning.content_searched" => {
            if get_str(a, "query")?.is_none() {
                return Err(Reject::schema("attrs.query: required"));
            }
            ContentSearched {
                results_clicked: req_count(a, "results_clicked")?,
            }
        }
        "checkin.scheduled" => {
            let due = match &get_str(a, "due_at")? {
                None => return Err(Reject::schema("attrs.due_at: required")),
                Some(s) => timestamp(
                    s,
                    "attrs.due_at",
                    &Limits {
                        now: None,
                        ..*limits
                    },
                )?,
            };
            CheckinScheduled {
                checkin_id: attr_id(a, "checkin_id")?,
                due_at: due,
            }
        }
        "checkin.completed" => CheckinCompleted {
            checkin_id: attr_id(a, "checkin_id")?,
        },
        "checkin.skipped" => CheckinSkipped {
            checkin_id: attr_id(a, "checkin_id")?,
        },
        "goal.updated" => GoalUpdated {
            goal_id: attr_id(a, "goal_id")?,
            progress_delta_pct: req_number(a, "progress_delta_pct", -1e9, 1e9)?,
        },
        "feedback.received" => FeedbackReceived {
            feedback_id: attr_id(a, "feedback_id")?,
        },
        "feedback.acknowledged" => FeedbackAcknowledged {
            feedback_id: attr_id(a, "feedback_id")?,
        },
        "mobility.posting_viewed" => PostingViewed {
            posting_id: attr_id(a, "posting_id")?,
        },
        "mobility.applied" => Applied {
            posting_id: attr_id(a, "posting_id")?,
        },
        "mobility.role_changed" => match get_str(a, "change")?.as_deref() {
            Some("promotion") => RoleChanged { promotion: true },
            Some("lateral") => RoleChanged { promotion: false },
            Some(other) => {
                return Err(Reject::schema(format!(
                    "attrs.change: {:?} is not \"promotion\" or \"lateral\"",
                    truncate(other, 40)
                )))
            }
            None => {
                return Err(Reject::schema(
                    "attrs.change: required (\"promotion\" or \"lateral\")",
                ))
            }
        },
        "development.plan_abandoned" => PlanAbandoned {
            plan_id: attr_id(a, "plan_id")?,
        },
        "skills.assessment_abandoned" => SkillsAssessmentAbandoned {
            assessment_id: attr_id(a, "assessment_id")?,
        },
        "collab.activity" => CollabActivity {
            messages: req_count(a, "messages")?,
            meetings: req_count(a, "meetings")?,
        },
        "recognition.given" => RecognitionGiven,
        "recognition.received" => RecognitionReceived,
        "work.tasks" => WorkTasks {
            completed: req_count(a, "completed")?,
            planned: req_count(a, "planned")?,
        },
        "work.sprint_closed" => SprintClosed {
            points_done: req_number(a, "points_done", 0.0, 1e9)?,
            points_target: req_number(a, "points_target", 0.0, 1e9)?,
        },
        "survey.pulse_response" => {
            let score = match get_num(a, "score")? {
                None => None,
                Some(v) => Some(number_in(v, "score", 0.0, 10.0)?),
            };
            let word_count = match (get_num(a, "word_count")?, &get_str(a, "text")?) {
                (Some(v), _) => Some(count(v, "word_count")?),
                (None, Some(text)) => {
                    Some(text.split_whitespace().count().min(u32::MAX as usize) as u32)
                }
                (None, None) => None,
            };
            PulseResponse {
                survey_id: attr_id(a, "survey_id")?,
                score,
                word_count,
            }
        }
        "feedback.comment" => match get_str(a, "text")? {
            Some(text) => FeedbackComment { text },
            None => return Err(Reject::schema("attrs.text: required")),
        },
        "consent.updated" => ConsentUpdated {
            individual_processing: req_bool(a, "individual_processing")?,
        },
        "employee.erased" => Erased,
        "employee.exited" => Exited {
            voluntary: req_bool(a, "voluntary")?,
        },
        "intervention.delivered" => InterventionDelivered {
            trigger_id: attr_id(a, "trigger_id")?,
        },
        "intervention.completed" => InterventionCompleted {
            trigger_id: attr_id(a, "trigger_id")?,
        },
        "intervention.ignored" => InterventionIgnored {
            trigger_id: attr_id(a, "trigger_id")?,
        },
        "time_off.recorded" => {
            let starts_on = req_date(a, "starts_on")?;
            let ends_on = req_date(a, "ends_on")?;
            if ends_on < starts_on {
                return Err(Reject::schema("attrs.ends_on: before attrs.starts_on"));
            }
            if ends_on - starts_on + 1 > MAX_TIME_OFF_DAYS {
                return Err(Reject::schema(format!(
                    "attrs.starts_on..attrs.ends_on: {} days, over {MAX_TIME_OFF_DAYS}",
                    ends_on - starts_on + 1
                )));
            }
            TimeOffRecorded {
                time_off_id: attr_id(a, "time_off_id")?,
                starts_on,
                ends_on,
            }
        }
        "time_off.cancelled" => TimeOffCancelled {
            time_off_id: attr_id(a, "time_off_id")?,
        },
        other => {
            return Err(Reject::new(
                ErrorCode::UnknownType,
                format!(
                    "type: {:?} is not in the event catalog",
                    truncate(other, 64)
                ),
            ))
        }
    })
}

#[cfg(test)]
mod tests;
