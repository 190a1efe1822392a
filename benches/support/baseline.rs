//! The engine bench's baseline: serde_json parsing an event line into an owned typed struct
//! (no validation, no engine).

use serde::Deserialize;

#[allow(dead_code)]
#[derive(Deserialize)]
pub struct BaselineAttrs {
    task_id: Option<String>,
    module_id: Option<String>,
    checkin_id: Option<String>,
    due_at: Option<String>,
    messages: Option<u64>,
    meetings: Option<u64>,
    completed: Option<u64>,
    planned: Option<u64>,
    progress_pct: Option<f64>,
    before_assessment: Option<bool>,
}

#[allow(dead_code)]
#[derive(Deserialize)]
pub struct Baseline {
    pub event_id: String,
    employee_id: String,
    occurred_at: String,
    #[serde(rename = "type")]
    kind: String,
    team_id: Option<String>,
    cohort_id: Option<String>,
    manager_id: Option<String>,
    attrs: Option<BaselineAttrs>,
}
