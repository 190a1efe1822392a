//! The patterns the simulator injects, each with the truth it expects: the employee rules'
//! detections and near misses, the team patterns and the cohort stall.

use super::*;

pub(super) fn rule_window(
    b: &mut Builder,
    rule: &str,
    emp: u32,
    fire: bool,
    from: Ts,
    to: Ts,
    note: &str,
) {
    b.expect(rule, employee_id(emp), fire, from, to, note);
}

/// Injects an employee pattern: events, everyday behaviour left out, and the truth.
pub(super) fn inject(b: &mut Builder, emp: u32, p: Pattern, days: i64, off: Ts, q: &mut Quiet) {
    let late = days - 20;
    match p {
        Pattern::None => {}
        Pattern::CollabDecline | Pattern::NearCollabDip => {
            let from = days - 22;
            let factor = if p == Pattern::CollabDecline {
                0.2
            } else {
                0.7
            };
            q.collab_low = Some((from, from + 14, factor));
            rule_window(
                b,
                "collaboration_decline",
                emp,
                p == Pattern::CollabDecline,
                EPOCH + from * DAY,
                EPOCH + (from + 15) * DAY,
                if factor < 0.5 {
                    "collaboration at 20 % for 14 days"
                } else {
                    "collaboration at 70 % for 14 days"
                },
            );
        }
        Pattern::RecognitionWithdrawal => {
            let last_day = days - 40;
            // The last recognition on or before `last_day` (weekly on d % 7 == emp % 7).
            let last = last_day - (last_day - emp as i64 % 7).rem_euclid(7);
            q.recognition_from = Some(last);
            let t = day_at(last, 14, off) + 30 * DAY;
            rule_window(
                b,
                "recognition_withdrawal",
                emp,
                true,
                t,
                t + HOUR,
                "no recognition after a weekly rhythm",
            );
        }
        Pattern::PulseShortening | Pattern::NearOneShortPulse => {
            let d = late - 10;
            q.pulse_from = Some(d);
            // Everyday answers have 25-40 words. The pattern: 5 and 5 (the rule may fire on the
            // first, when its mean with the answer before is already under half); the near miss:
            // 20 then 30, never under half of a mean of at most 40.
            let (first, second) = if p == Pattern::PulseShortening {
                (5, 5)
            } else {
                (20, 30)
            };
            b.emit(
                emp,
                day_at(d, 12, off),
                Kind::PulseResponse {
                    survey_id: s(format!("pulse-x-{d}")),
                    score: Some(8.0),
                    word_count: Some(first),
                },
                None,
            );
            b.emit(
                emp,
                day_at(d + 7, 12, off),
                Kind::PulseResponse {
                    survey_id: s(format!("pulse-x-{}", d + 7)),
                    score: Some(8.0),
                    word_count: Some(second),
                },
                None,
            );
            let t = day_at(d + 7, 12, off);
            rule_window(
                b,
                "pulse_shortening",
                emp,
                p == Pattern::PulseShortening,
                day_at(d, 12, off),
                t + HOUR,
                "two short pulse answers",
            );
        }
        Pattern::CheckinLapse
        | Pattern::NearSingleSkip
        | Pattern::ConsentWithdrawn
        | Pattern::Exited
        | Pattern::Erased => {
            let c1 = next_cycle_day(late - 14, checkin_cycle(emp));
            q.skip_cycles.push(c1);
            if p != Pattern::NearSingleSkip {
                q.skip_cycles.push(c1 + 14);
            }
            let t = day_at(c1 + 14 + 1, 11, off);
            let fire = p == Pattern::CheckinLapse;
            let note = match p {
                Pattern::CheckinLapse => "two check-ins skipped in a row",
                Pattern::NearSingleSkip => "one check-in skipped",
                Pattern::ConsentWithdrawn => "two check-ins skipped after consent was withdrawn",
                Pattern::Exited => "two check-ins skipped, but the employee exited before",
                _ => "two check-ins skipped, but the employee's data was erased before",
            };
            let before = day_at(c1 - 1, 8, off);
            match p {
                Pattern::ConsentWithdrawn => b.emit(
                    emp,
                    before,
                    Kind::ConsentUpdated {
                        individual_processing: false,
                    },
                    None,
                ),
                Pattern::Exited => {
                    b.emit(
                        emp,
                        day_at(c1 + 14, 8, off),
                        Kind::Exited { voluntary: true },
                        None,
                    );
                }
                Pattern::Erased => {
                    b.emit(emp, day_at(c1 + 14, 8, off), Kind::Erased, None);
                }
                _ => {}
            }
            // Everyday events keep arriving after an exit or erasure (late producers), the
            // second skip among them: none of it may count.
            rule_window(
                b,
                "checkin_lapse",
                emp,
                fire,
                day_at(c1, 0, 0),
                t + HOUR,
                note,
            );
            if !fire {
                // Nothing else about them may fire either.
                rule_window(
                    b,
                    "attrition_risk",
                    emp,
                    false,
                    day_at(c1, 0, 0),
                    t + HOUR,
                    note,
                );
            }
        }
        Pattern::FeedbackUnacknowledged | Pattern::NearOneUnacknowledged => {
            let d = late - 8;
            q.feedback_from = Some(d - 8);
            b.emit(
                emp,
                day_at(d, 13, off),
                Kind::FeedbackReceived {
                    feedback_id: s(format!("fbx-{emp}-1")),
                },
                None,
            );
            b.emit(
                emp,
                day_at(d + 3, 13, off),
                Kind::FeedbackReceived {
                    feedback_id: s(format!("fbx-{emp}-2")),
                },
                None,
            );
            if p == Pattern::NearOneUnacknowledged {
                b.emit(
                    emp,
                    day_at(d + 4, 9, off),
                    Kind::FeedbackAcknowledged {
                        feedback_id: s(format!("fbx-{emp}-2")),
                    },
                    None,
                );
            }
            let t = day_at(d + 3, 13, off) + 7 * DAY;
            rule_window(
                b,
                "feedback_unacknowledged",
                emp,
                p == Pattern::FeedbackUnacknowledged,
                day_at(d, 13, off),
                t + HOUR,
                "feedback left unacknowledged",
            );
        }
        Pattern::PassiveGoals | Pattern::NearTwoPassiveGoals => {
            let d = late - 6;
            q.goals_from = Some(d - 31);
            let count = if p == Pattern::PassiveGoals { 3 } else { 2 };
            for i in 0..count {
                b.emit(
                    emp,
                    day_at(d + 3 * i, 15, off),
                    Kind::GoalUpdated {
                        goal_id: s(format!("goal-{emp}")),
                        progress_delta_pct: 0.0,
                    },
                    None,
                );
            }
            let t = day_at(d + 6, 15, off);
            rule_window(
                b,
                "passive_goals",
                emp,
                p == Pattern::PassiveGoals,
                day_at(d, 15, off),
                t + HOUR,
                "goal updates without progress",
            );
        }
        Pattern::LearningAbandonment => {
            let d = late;
            b.emit(
                emp,
                day_at(d, 15, off + 3000),
                Kind::ModuleStarted {
                    module_id: s("mod-pat".into()),
                },
                None,
            );
            let t = day_at(d + 1, 16, off);
            b.emit(
                emp,
                t,
                Kind::ModuleAbandoned {
                    module_id: s("mod-pat".into()),
                    progress_pct: 85.0,
                    before_assessment: true,
                },
                None,
            );
            rule_window(
                b,
                "learning_abandonment",
                emp,
                true,
                t,
                t + HOUR,
                "abandoned just before the assessment",
            );
        }
        Pattern::LearningConfusion | Pattern::NearTwoFailedSearches => {
            let d = late;
            let count = if p == Pattern::LearningConfusion {
                3
            } else {
                2
            };
            for i in 0..count {
                b.emit(
                    emp,
                    day_at(d + i, 19, off),
                    Kind::ContentSearched { results_clicked: 0 },
                    None,
                );
            }
            let t = day_at(d + 2, 19, off);
            rule_window(
                b,
                "learning_confusion",
                emp,
                p == Pattern::LearningConfusion,
                day_at(d, 19, off),
                t + HOUR,
                "searches without a click",
            );
        }
        Pattern::MobilityFrustration | Pattern::NearTwoPostingViews => {
            let d = late;
            q.postings_from = Some(d - 31);
            let count = if p == Pattern::MobilityFrustration {
                3
            } else {
                2
            };
            for i in 0..count {
                b.emit(
                    emp,
                    day_at(d + 2 * i, 20, off),
                    Kind::PostingViewed {
                        posting_id: s(format!("post-x-{i}")),
                    },
                    None,
                );
            }
            let t = day_at(d + 4, 20, off);
            rule_window(
                b,
                "mobility_frustration",
                emp,
                p == Pattern::MobilityFrustration,
                day_at(d, 20, off),
                t + HOUR,
                "postings viewed, no application",
            );
        }
        Pattern::PerformanceDip | Pattern::NearOneLowSprint => {
            let s1 = next_cycle_day(late - 14, sprint_cycle(emp));
            q.low_sprints.push(s1);
            if p == Pattern::PerformanceDip {
                q.low_sprints.push(s1 + 14);
            }
            let t = day_at(s1 + 14, 16, off);
            rule_window(
                b,
                "performance_dip",
                emp,
                p == Pattern::PerformanceDip,
                day_at(s1, 16, off),
                t + HOUR,
                "sprints below target",
            );
        }
        Pattern::Attrition => {
            // Mobility (20) + check-in lapse (15) + performance dip (20) within 30 days: 55.
            let c1 = next_cycle_day(late - 14, checkin_cycle(emp));
            q.skip_cycles.extend([c1, c1 + 14]);
            let lapse = day_at(c1 + 15, 11, off);
            let s1 = next_cycle_day(late - 14, sprint_cycle(emp));
            q.low_sprints.extend([s1, s1 + 14]);
            let dip = day_at(s1 + 14, 16, off);
            let v = late - 8;
            q.postings_from = Some(v - 31);
            for i in 0..3 {
                b.emit(
                    emp,
                    day_at(v + 2 * i, 20, off),
                    Kind::PostingViewed {
                        posting_id: s(format!("post-y-{i}")),
                    },
                    None,
                );
            }
            let mob = day_at(v + 4, 20, off);
            rule_window(
                b,
                "checkin_lapse",
                emp,
                true,
                lapse,
                lapse + HOUR,
                "attrition: check-in lapse",
            );
            rule_window(
                b,
                "performance_dip",
                emp,
                true,
                dip,
                dip + HOUR,
                "attrition: sprints below target",
            );
            rule_window(
                b,
                "mobility_frustration",
                emp,
                true,
                mob,
                mob + HOUR,
                "attrition: postings viewed",
            );
            let t = lapse.max(dip).max(mob);
            rule_window(
                b,
                "attrition_risk",
                emp,
                true,
                t,
                t + HOUR,
                "check-in lapse + performance dip + mobility = 55",
            );
        }
    }
}

pub(super) fn team_members(team: u32, n: u32) -> impl Iterator<Item = u32> {
    (team * TEAM..((team + 1) * TEAM).min(n)).filter(move |&e| e < n)
}

pub(super) fn inject_team(b: &mut Builder, team: u32, tp: TeamPattern, days: i64, n: u32) {
    let subject = format!("team-{team:05}");
    match tp {
        TeamPattern::None => {}
        TeamPattern::CheckinDrop => {
            // Everyday check-ins stop for the whole team 16 days before the end (see simulate).
            let from = EPOCH + (days - 16) * DAY;
            b.expect(
                "team_checkin_drop",
                subject,
                true,
                from,
                from + 16 * DAY,
                "the team's check-ins stop",
            );
        }
        TeamPattern::TrainingLow => {
            let d = days - 12;
            for e in team_members(team, n) {
                let off = (e as i64 % 3000) * 1000;
                for i in 0..2 {
                    let m = format!("mod-low-{i}");
                    b.emit(
                        e,
                        day_at(d + i, 10, off),
                        Kind::ModuleStarted {
                            module_id: s(m.clone()),
                        },
                        None,
                    );
                    b.emit(
                        e,
                        day_at(d + i, 12, off),
                        Kind::ModuleAbandoned {
                            module_id: s(m),
                            progress_pct: 20.0,
                            before_assessment: false,
                        },
                        None,
                    );
                }
            }
            let from = EPOCH + d * DAY;
            b.expect(
                "team_training_completion_low",
                subject,
                true,
                from,
                from + 4 * DAY,
                "modules started and dropped across the team",
            );
        }
        TeamPattern::SentimentShift => {
            let d = days - 12;
            for e in team_members(team, n) {
                let off = (e as i64 % 3000) * 1000;
                for i in 0..2 {
                    b.emit(
                        e,
                        day_at(d + i, 17, off + 3000),
                        Kind::FeedbackComment {
                            text: Cow::Borrowed("the workload is crushing and I am exhausted"),
                        },
                        None,
                    );
                }
            }
            let from = EPOCH + d * DAY;
            b.expect(
                "team_sentiment_shift",
                subject,
                true,
                from,
                from + 4 * DAY,
                "negative comments about workload",
            );
        }
    }
}

/// Two of a cohort's six new hires start a task and leave it open: the cohort stalls (2 of 6 is
/// over 30 %), and each of the two has onboarding friction.
pub(super) fn inject_cohort_stall(
    b: &mut Builder,
    cohort: u32,
    hires_from: u32,
    n: u32,
    days: i64,
) {
    let first = hires_from + cohort * COHORT;
    let members: Vec<u32> = (first..(first + COHORT).min(n)).collect();
    if members.len() < COHORT as usize {
        return;
    }
    let hired = 7 + (cohort as i64 * 11) % (days / 2).max(1);
    let d = hired + 5;
    if d + 4 >= days {
        return;
    }
    // Every member starts the task (a cohort task needs min_group_size starters); four finish
    // it the same day, two leave it open.
    for (i, &e) in members.iter().enumerate() {
        let off = (e as i64 % 3000) * 1000;
        let t = day_at(d, 9, off);
        b.emit(
            e,
            t,
            Kind::TaskStarted {
                task_id: s("onb-task-open".into()),
            },
            Some(cohort),
        );
        if i >= 2 {
            b.emit(
                e,
                t + 4 * HOUR,
                Kind::TaskCompleted {
                    task_id: s("onb-task-open".into()),
                },
                Some(cohort),
            );
        } else {
            rule_window(
                b,
                "onboarding_friction",
                e,
                true,
                t + 72 * HOUR,
                t + 72 * HOUR + HOUR,
                "onboarding task left open",
            );
        }
    }
    let t0 = day_at(d, 9, (members[0] as i64 % 3000) * 1000);
    let t1 = day_at(d, 9, (members[1] as i64 % 3000) * 1000);
    let at = t0.max(t1) + 72 * HOUR;
    b.expect(
        "cohort_onboarding_stall",
        format!("cohort-{cohort:04}"),
        true,
        at,
        at + DAY,
        "two of six new hires left a task open",
    );
}
