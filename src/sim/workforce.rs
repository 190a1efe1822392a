//! Everyday behaviour of the simulated workforce: an employee's ordinary days, time away,
//! and a new hire's onboarding.

use super::*;

/// One engaged day of one employee.
pub(super) fn everyday(
    b: &mut Builder,
    emp: u32,
    d: i64,
    days: i64,
    off: Ts,
    q: &Quiet,
    cohort: Option<u32>,
) {
    let weekday = d % 7 < 5;
    let r = |b: &mut Builder, n: u64| b.rng.below(n) as u32;
    if weekday {
        let (mut m, mut mt) = (15 + r(b, 10), 3 + r(b, 3));
        if let Some((from, to, f)) = q.collab_low {
            if d >= from && d < to {
                m = (m as f64 * f) as u32;
                mt = (mt as f64 * f) as u32;
            }
        }
        b.emit(
            emp,
            day_at(d, 17, off),
            Kind::CollabActivity {
                messages: m,
                meetings: mt,
            },
            None,
        );
        let planned = 5 + r(b, 3);
        let completed = planned - u32::from(b.rng.chance(0.3));
        b.emit(
            emp,
            day_at(d, 17, off + 60_000),
            Kind::WorkTasks { completed, planned },
            None,
        );
    }
    if d % 14 == sprint_cycle(emp) {
        let target = 20.0;
        let done = if q.low_sprints.contains(&d) {
            10.0
        } else {
            18.0 + r(b, 5) as f64
        };
        b.emit(
            emp,
            day_at(d, 16, off),
            Kind::SprintClosed {
                points_done: done,
                points_target: target,
            },
            None,
        );
    }
    if d % 14 == checkin_cycle(emp) && d + 2 < days && q.checkins_from.is_none_or(|f| d < f) {
        let id = format!("ci-{emp}-{d}");
        b.emit(
            emp,
            day_at(d, 10, off),
            Kind::CheckinScheduled {
                checkin_id: s(id.clone()),
                due_at: day_at(d + 2, 10, off),
            },
            None,
        );
        let kind = if q.skip_cycles.contains(&d) {
            Kind::CheckinSkipped { checkin_id: s(id) }
        } else {
            Kind::CheckinCompleted { checkin_id: s(id) }
        };
        b.emit(emp, day_at(d + 1, 11, off), kind, None);
    }
    if d % 30 == emp as i64 % 30 && q.pulse_from.is_none_or(|f| d < f) {
        let score = 7.0 + r(b, 3) as f64;
        let words = 25 + r(b, 16);
        b.emit(
            emp,
            day_at(d, 12, off),
            Kind::PulseResponse {
                survey_id: s(format!("pulse-{}", d / 30)),
                score: Some(score),
                word_count: Some(words),
            },
            None,
        );
    }
    if d % 7 == emp as i64 % 7 && q.recognition_from.is_none_or(|f| d <= f) {
        b.emit(emp, day_at(d, 14, off), Kind::RecognitionReceived, None);
    }
    if d % 20 == emp as i64 % 20 && d + 1 < days && q.feedback_from.is_none_or(|f| d < f) {
        let id = format!("fb-{emp}-{d}");
        b.emit(
            emp,
            day_at(d, 13, off),
            Kind::FeedbackReceived {
                feedback_id: s(id.clone()),
            },
            None,
        );
        b.emit(
            emp,
            day_at(d + 1, 9, off),
            Kind::FeedbackAcknowledged { feedback_id: s(id) },
            None,
        );
    }
    if d % 10 == emp as i64 % 10 && q.goals_from.is_none_or(|f| d < f) {
        let delta = 5.0 + r(b, 10) as f64;
        b.emit(
            emp,
            day_at(d, 15, off),
            Kind::GoalUpdated {
                goal_id: s(format!("goal-{emp}")),
                progress_delta_pct: delta,
            },
            None,
        );
    }
    if d % 21 == emp as i64 % 21 {
        // A five-minute module, finished the day it is started.
        let module = format!("mod-{}", (emp as i64 + d) % 40);
        b.emit(
            emp,
            day_at(d, 10, off + 1000),
            Kind::ModuleStarted {
                module_id: s(module.clone()),
            },
            None,
        );
        b.emit(
            emp,
            day_at(d, 16, off),
            Kind::ModuleCompleted {
                module_id: s(module),
            },
            None,
        );
    }
    if d % 5 == emp as i64 % 5 {
        let clicked = 1 + r(b, 3);
        b.emit(
            emp,
            day_at(d, 11, off),
            Kind::ContentSearched {
                results_clicked: clicked,
            },
            None,
        );
    }
    if d % 15 == emp as i64 % 15 {
        const NEUTRAL: [&str; 4] = [
            "sprint planning went as usual this week",
            "the workload feels manageable this month",
            "our standups moved to ten in the morning",
            "the team offsite agenda is out",
        ];
        let text = NEUTRAL[b.rng.below(4) as usize];
        b.emit(
            emp,
            day_at(d, 16, off + 2000),
            Kind::FeedbackComment {
                text: Cow::Borrowed(text),
            },
            None,
        );
    }
    if d % 60 == emp as i64 % 60 && q.postings_from.is_none_or(|f| d < f) {
        b.emit(
            emp,
            day_at(d, 18, off),
            Kind::PostingViewed {
                posting_id: s(format!("post-{}", (emp as i64 + d) % 97)),
            },
            None,
        );
    }
    let _ = cohort;
}

/// A day of recorded time off: nothing but the check-in the calendar schedules anyway.
pub(super) fn away(b: &mut Builder, emp: u32, d: i64, days: i64, off: Ts) {
    if d % 14 == checkin_cycle(emp) && d + 2 < days {
        b.emit(
            emp,
            day_at(d, 10, off),
            Kind::CheckinScheduled {
                checkin_id: s(format!("ci-{emp}-{d}")),
                due_at: day_at(d + 2, 10, off),
            },
            None,
        );
    }
}

/// A new hire's first week: four onboarding tasks, each completed the day it starts, and one
/// question to HR.
pub(super) fn onboarding(b: &mut Builder, emp: u32, hired: i64, cohort: u32, days: i64, off: Ts) {
    for t in 0..4 {
        let d = hired + t;
        if d + 1 >= days {
            break;
        }
        let task = format!("onb-task-{t}");
        b.emit(
            emp,
            day_at(d, 9, off),
            Kind::TaskStarted {
                task_id: s(task.clone()),
            },
            Some(cohort),
        );
        b.emit(
            emp,
            day_at(d, 15, off),
            Kind::TaskCompleted { task_id: s(task) },
            Some(cohort),
        );
    }
    b.emit(
        emp,
        day_at(hired, 11, off),
        Kind::ClarificationRequested,
        Some(cohort),
    );
}
