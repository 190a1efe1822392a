//! docs/contract.md §8's population, rule by rule: a shift of everyone is not a person's change.
//! Feed gaps are found from the population's figures and left out of their source's windows;
//! the ratio rules compare their subject with everyone else over the same days; the team
//! rules leave out the days the population was away.

use super::test_support::{day, H};
use super::*;
use crate::config::Settings;
use crate::rules::population::{DayFigures, Table, EMPTY_TASK};
use crate::time::{day_of, HOUR};

fn h(relative: bool, gap_share: f64) -> H {
    let mut st = Settings::default();
    st.rules.follow_up.enabled = false;
    st.population.relative = relative;
    st.population.gap_share = gap_share;
    H::with(st, None)
}

/// `n` employees with collaboration rollups every day of `days`: `per_day(employee, day)`
/// messages (`None`: no rollup that day).
fn collab(
    h: &mut H,
    n: usize,
    days: std::ops::Range<i64>,
    per_day: impl Fn(usize, i64) -> Option<u32>,
) {
    for d in days {
        for e in 0..n {
            if let Some(m) = per_day(e, d) {
                h.send(
                    &format!("e{e:02}"),
                    day(d) + 10 * HOUR + e as i64,
                    Kind::CollabActivity {
                        messages: m,
                        meetings: 0,
                    },
                );
            }
        }
    }
}

#[test]
fn everyone_quieter_together_is_not_one_person_declining() {
    // Thirty people at 20 a day for 70 days, then all of them at 8 (40 %) for 14.
    let run = |relative: bool| {
        let mut h = h(relative, 0.5);
        collab(&mut h, 30, 0..84, |_, d| Some(if d < 70 { 20 } else { 8 }));
        h.advance(day(85));
        h.fired("collaboration_decline").len()
    };
    assert_eq!(
        run(false),
        30,
        "the control: each of them, judged alone, fires"
    );
    assert_eq!(
        run(true),
        0,
        "compared with everyone else, nobody stands out"
    );
}

#[test]
fn one_person_declining_alone_fires_with_the_population_ratio_in_the_reasons() {
    let mut h = h(true, 0.5);
    // Everyone quieter by a fifth; e00 down to a quarter.
    collab(&mut h, 30, 0..84, |e, d| {
        Some(match (e, d < 70) {
            (_, true) => 20,
            (0, false) => 5,
            _ => 16,
        })
    });
    h.advance(day(85));
    let fired = h.fired("collaboration_decline");
    assert_eq!(fired.len(), 1);
    assert_eq!(fired[0].subject, "e00");
    let pop = fired[0]
        .reasons
        .iter()
        .find(|r| r.signal == "population_collaboration_ratio")
        .expect("the population's ratio is in the reasons");
    // It fires on the first day its window is low enough against everyone else's over the
    // same days (then part before, part after the change: between 80 % and 100 %).
    assert!(pop.observed > 0.8 && pop.observed < 1.0, "{}", pop.observed);
    // The threshold is the rule's 50 % scaled by the population's ratio, of a baseline of 20.
    let own = &fired[0].reasons[0];
    assert!(
        (own.threshold - 0.5 * pop.observed * 20.0).abs() < 0.1,
        "{:?}",
        fired[0].reasons
    );
}

#[test]
fn a_day_nobody_reported_is_a_feed_gap_left_out_of_the_windows() {
    // Thirty people every weekday for 11 weeks; then the collaboration feed delivers nothing
    // for 6 weekdays. Judged without the population's gaps (and without relative thresholds,
    // so the gaps alone are tested), every one of them would have halved.
    let weekday = |d: i64| d % 7 < 5;
    let run = |gap_share: f64| {
        let mut h = h(false, gap_share);
        collab(&mut h, 30, 0..87, |_, d| {
            (weekday(d) && !(77..85).contains(&d)).then_some(20)
        });
        h.advance(day(87));
        (h.fired("collaboration_decline").len(), h.engine.take_gaps())
    };
    let (fired, gaps) = run(0.0);
    assert!(fired > 0, "the control fires ({fired})");
    assert!(gaps.is_empty());
    let (fired, gaps) = run(0.5);
    assert_eq!(fired, 0);
    let days: Vec<i64> = gaps.iter().map(|g| g.0 - day_of(day(0))).collect();
    assert_eq!(
        days,
        vec![77, 78, 79, 80, 81, 84],
        "the outage's weekdays, not its weekend"
    );
    assert!(gaps
        .iter()
        .all(|g| g.1 == crate::rules::presence::Source::Collab));
}

#[test]
fn a_small_population_has_no_feed_gaps() {
    // Five people: a day without rollups cannot be told from five quiet people.
    let mut h = h(false, 0.5);
    collab(&mut h, 5, 0..86, |_, d| {
        (!(77..85).contains(&d)).then_some(20)
    });
    h.advance(day(87));
    assert!(h.engine.take_gaps().is_empty());
    assert_eq!(h.fired("collaboration_decline").len(), 5);
}

fn fig(reported: u32) -> DayFigures {
    DayFigures {
        active: reported,
        present: reported,
        reported: [reported, reported],
        ..Default::default()
    }
}

#[test]
fn the_table_closes_a_day_once_every_task_has_and_never_takes_it_back() {
    let mut t = Table::new(3);
    t.share(0, 10, fig(4));
    assert!(!t.closed(0, 10));
    t.share(1, 10, fig(5));
    assert!(!t.closed(1, 11));
    assert_eq!(t.through, None, "task 2 has not said");
    // An empty task is not waited for.
    assert!(t.closed(2, EMPTY_TASK));
    assert_eq!(t.through, Some(10));
    assert_eq!(
        t.figures(None, 10),
        vec![(10, {
            let mut f = fig(4);
            f.add(&fig(5));
            f
        })]
    );
    // Too late for a closed day (every reader drops it alike); the empty task with events
    // now holds the population back from here on, but never behind what was closed.
    t.share(2, 10, fig(100));
    assert_eq!(t.figures(None, 10)[0].1.reported[0], 9);
    t.share(2, 11, fig(1));
    assert!(!t.closed(2, 9));
    assert_eq!(t.through, Some(10));
    assert!(!t.closed(0, 12));
    assert!(t.closed(2, 11));
    assert_eq!(t.through, Some(11));
    assert_eq!(t.figures(Some(10), 11), vec![(11, fig(1))]);
}

#[test]
fn a_task_behind_the_population_still_closes_its_own_days_with_their_counts() {
    // A task restored from its changelog behind the population (the others, and its own
    // closes before the crash, went further): it closes the same days again with the same
    // counts — its share is its own to close, whatever the population has closed.
    use crate::rules::population::Population;
    use crate::rules::presence::Days;
    let mut p = Population::new(0.5, &Days::default());
    p.local = false;
    p.acc.seen(None, 10);
    p.closed_through(20);
    p.close_share(15);
    let active: Vec<(i32, u32)> = p.outbox.iter().map(|(d, f)| (*d, f.active)).collect();
    assert_eq!(active, (10..=15).map(|d| (d, 1)).collect::<Vec<_>>());
}
