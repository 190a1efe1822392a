//! Protobuf decoding (`momentd.v1.InteractionEvent`) into the same raw record as JSON, so both
//! encodings pass the same validation and give the same typed event.

use std::borrow::Cow;

use prost::Message;

use super::pb;
use super::{AttrSource, AttrVal, ErrorCode, Event, Kind, Limits, RawEvent, Reject};
use crate::time;

fn nonempty(s: String) -> Option<Cow<'static, str>> {
    if s.is_empty() {
        None
    } else {
        Some(Cow::Owned(s))
    }
}

fn owned(s: Option<String>) -> Option<Cow<'static, str>> {
    s.map(Cow::Owned)
}

/// The protobuf attributes, read by name like JSON's.
struct PbAttrs(pb::Attrs);

impl AttrSource<'static> for PbAttrs {
    fn take(&mut self, name: &str) -> Option<AttrVal<'static>> {
        let a = &mut self.0;
        let s = |v: &mut Option<String>| v.take().map(|s| AttrVal::Str(Cow::Owned(s)));
        let i = |v: Option<i64>| v.map(|v| AttrVal::Num(v as f64));
        let f = |v: Option<f64>| v.map(AttrVal::Num);
        let b = |v: Option<bool>| v.map(AttrVal::Bool);
        match name {
            "task_id" => s(&mut a.task_id),
            "channel" => s(&mut a.channel),
            "module_id" => s(&mut a.module_id),
            "progress_pct" => f(a.progress_pct),
            "before_assessment" => b(a.before_assessment),
            "score_pct" => f(a.score_pct),
            "passed" => b(a.passed),
            "query" => s(&mut a.query),
            "results_clicked" => i(a.results_clicked),
            "checkin_id" => s(&mut a.checkin_id),
            "due_at" => s(&mut a.due_at),
            "goal_id" => s(&mut a.goal_id),
            "progress_delta_pct" => f(a.progress_delta_pct),
            "feedback_id" => s(&mut a.feedback_id),
            "posting_id" => s(&mut a.posting_id),
            "change" => s(&mut a.change),
            "plan_id" => s(&mut a.plan_id),
            "assessment_id" => s(&mut a.assessment_id),
            "messages" => i(a.messages),
            "meetings" => i(a.meetings),
            "completed" => i(a.completed),
            "planned" => i(a.planned),
            "points_done" => f(a.points_done),
            "points_target" => f(a.points_target),
            "survey_id" => s(&mut a.survey_id),
            "score" => f(a.score),
            "word_count" => i(a.word_count),
            "text" => s(&mut a.text),
            "individual_processing" => b(a.individual_processing),
            "voluntary" => b(a.voluntary),
            "trigger_id" => s(&mut a.trigger_id),
            "time_off_id" => s(&mut a.time_off_id),
            "starts_on" => s(&mut a.starts_on),
            "ends_on" => s(&mut a.ends_on),
            _ => None,
        }
    }
}

/// Decodes one protobuf event. Undecodable bytes are `malformed_protobuf`; the rest is validated
/// exactly as JSON is.
pub fn decode_protobuf(bytes: &[u8], limits: &Limits) -> Result<Event<'static>, Reject> {
    let m = pb::InteractionEvent::decode(bytes)
        .map_err(|e| Reject::new(ErrorCode::MalformedProtobuf, e.to_string()))?;
    let a = m.attrs.unwrap_or_default();
    RawEvent {
        event_id: nonempty(m.event_id),
        employee_id: nonempty(m.employee_id),
        occurred_at: nonempty(m.occurred_at),
        kind: nonempty(m.r#type),
        team_id: owned(m.team_id),
        cohort_id: owned(m.cohort_id),
        manager_id: owned(m.manager_id),
        attrs: PbAttrs(a),
    }
    .validate(limits)
}

/// Encodes a typed event as `momentd.v1.InteractionEvent` (simulator, tests, benches).
pub fn encode_protobuf(ev: &Event<'_>) -> Vec<u8> {
    to_pb(ev).encode_to_vec()
}

fn s(c: &Cow<'_, str>) -> Option<String> {
    Some(c.to_string())
}

pub(crate) fn to_pb(ev: &Event<'_>) -> pb::InteractionEvent {
    let mut a = pb::Attrs::default();
    use Kind::*;
    match &ev.kind {
        TaskStarted { task_id } | TaskCompleted { task_id } => a.task_id = s(task_id),
        ClarificationRequested | RecognitionGiven | RecognitionReceived | Erased => {}
        ModuleStarted { module_id }
        | ModuleCompleted { module_id }
        | ContentReplayed { module_id } => a.module_id = s(module_id),
        ModuleAbandoned {
            module_id,
            progress_pct,
            before_assessment,
        } => {
            a.module_id = s(module_id);
            a.progress_pct = Some(*progress_pct);
            a.before_assessment = Some(*before_assessment);
        }
        AssessmentCompleted {
            module_id,
            score_pct,
            passed,
        } => {
            a.module_id = s(module_id);
            a.score_pct = Some(*score_pct);
            a.passed = Some(*passed);
        }
        ContentSearched { results_clicked } => {
            a.query = Some(String::new());
            a.results_clicked = Some(*results_clicked as i64);
        }
        CheckinScheduled { checkin_id, due_at } => {
            a.checkin_id = s(checkin_id);
            a.due_at = Some(time::format_rfc3339(*due_at));
        }
        CheckinCompleted { checkin_id } | CheckinSkipped { checkin_id } => {
            a.checkin_id = s(checkin_id)
        }
        GoalUpdated {
            goal_id,
            progress_delta_pct,
        } => {
            a.goal_id = s(goal_id);
            a.progress_delta_pct = Some(*progress_delta_pct);
        }
        FeedbackReceived { feedback_id } | FeedbackAcknowledged { feedback_id } => {
            a.feedback_id = s(feedback_id)
        }
        PostingViewed { posting_id } | Applied { posting_id } => a.posting_id = s(posting_id),
        RoleChanged { promotion } => {
            a.change = Some(if *promotion { "promotion" } else { "lateral" }.to_string())
        }
        PlanAbandoned { plan_id } => a.plan_id = s(plan_id),
        SkillsAssessmentAbandoned { assessment_id } => a.assessment_id = s(assessment_id),
        CollabActivity { messages, meetings } => {
            a.messages = Some(*messages as i64);
            a.meetings = Some(*meetings as i64);
        }
        WorkTasks { completed, planned } => {
            a.completed = Some(*completed as i64);
            a.planned = Some(*planned as i64);
        }
        SprintClosed {
            points_done,
            points_target,
        } => {
            a.points_done = Some(*points_done);
            a.points_target = Some(*points_target);
        }
        PulseResponse {
            survey_id,
            score,
            word_count,
        } => {
            a.survey_id = s(survey_id);
            a.score = *score;
            a.word_count = word_count.map(|w| w as i64);
        }
        FeedbackComment { text } => a.text = s(text),
        ConsentUpdated {
            individual_processing,
        } => a.individual_processing = Some(*individual_processing),
        Exited { voluntary } => a.voluntary = Some(*voluntary),
        InterventionDelivered { trigger_id }
        | InterventionCompleted { trigger_id }
        | InterventionIgnored { trigger_id } => a.trigger_id = s(trigger_id),
        TimeOffRecorded {
            time_off_id,
            starts_on,
            ends_on,
        } => {
            a.time_off_id = s(time_off_id);
            a.starts_on = Some(time::format_date(*starts_on as i64));
            a.ends_on = Some(time::format_date(*ends_on as i64));
        }
        TimeOffCancelled { time_off_id } => a.time_off_id = s(time_off_id),
    }
    pb::InteractionEvent {
        event_id: ev.event_id.to_string(),
        employee_id: ev.employee_id.to_string(),
        occurred_at: time::format_rfc3339(ev.occurred_at),
        r#type: ev.kind.type_name().to_string(),
        team_id: ev.team_id.as_ref().map(|c| c.to_string()),
        cohort_id: ev.cohort_id.as_ref().map(|c| c.to_string()),
        manager_id: ev.manager_id.as_ref().map(|c| c.to_string()),
        attrs: Some(a),
    }
}
