//! The group stage's promise, without a broker: employee partitions publishing contributions
//! and watermarks to group partitions, delivered in any interleaving (each channel in order,
//! as a Kafka partition keeps one producer's records), give the group triggers one engine
//! gives — whatever the number of partitions.

use std::collections::{BTreeMap, VecDeque};

use super::stage::{partition_of, From};
use super::*;
use crate::config::Settings;
use crate::rules::group::Contribution;
use crate::sim::SimOptions;

enum Msg {
    Contribution(Contribution, From),
    Watermark(u32, Ts),
}

fn events(employees: u32, days: u32, seed: u64) -> Vec<Event<'static>> {
    let mut evs = super::test_support::sim_events(&SimOptions {
        employees,
        days,
        seed,
        pattern_share: 1.0,
        ..Default::default()
    });
    evs.sort_by_key(|e| e.occurred_at);
    evs
}

fn by_id(outputs: &[Output]) -> BTreeMap<String, Trigger> {
    let mut m = BTreeMap::new();
    for o in outputs {
        if let Output::Trigger(t) = o {
            if let Some(prev) = m.insert(t.trigger_id.clone(), t.clone()) {
                assert_eq!(prev, *t, "one id, two contents");
            }
        }
    }
    m
}

use super::test_support::{same_triggers, Lcg};

/// Runs `evs` over `n` employee partitions (by a hash of the employee id), whose group stages
/// own the groups hashing to them; messages wait in per-channel queues and are delivered at
/// random moments. Returns every output.
fn partitioned(s: &Settings, evs: &[Event<'_>], n: u32, seed: u64) -> Vec<Output> {
    let mut engines: Vec<Engine> = (0..n)
        .map(|p| {
            let mut e = Engine::from_settings(s, None);
            e.publish_contributions(p, n as usize);
            e.publish_population();
            e
        })
        .collect();
    let mut channels: Vec<VecDeque<Msg>> = (0..n * n).map(|_| VecDeque::new()).collect();
    let mut rng = Lcg(seed);
    let mut out = Vec::new();
    let deliver = |engines: &mut Vec<Engine>,
                   channels: &mut Vec<VecDeque<Msg>>,
                   ch: usize,
                   out: &mut Vec<Output>| {
        let q = ch as u32 % n;
        if let Some(m) = channels[ch].pop_front() {
            let e = &mut engines[q as usize];
            match m {
                Msg::Contribution(c, from) => e.receive(c, Some(from), None, out),
                Msg::Watermark(p, w) => e.source_watermark(p, w, out),
            }
        }
    };
    let publish = |engines: &mut Vec<Engine>, channels: &mut Vec<VecDeque<Msg>>, p: u32| {
        let taken: Vec<(Contribution, From)> = engines[p as usize].take_contributions().collect();
        for (c, from) in taken {
            match c.group_key() {
                Some(k) => {
                    let q = partition_of(k, n);
                    channels[(p * n + q) as usize].push_back(Msg::Contribution(c, from));
                }
                None => {
                    for q in 0..n {
                        channels[(p * n + q) as usize]
                            .push_back(Msg::Contribution(c.clone(), from));
                    }
                }
            }
        }
        let w = engines[p as usize].watermark().unwrap_or(Ts::MIN);
        for q in 0..n {
            channels[(p * n + q) as usize].push_back(Msg::Watermark(p, w));
        }
    };
    // The population table every engine reads (the population topic, in `run`), and per
    // partition its events in order, then its last advance; a partition whose next step
    // would close a day the population has not closed publishes its share and waits.
    let mut table = crate::rules::population::Table::new(n as usize);
    let end = evs.last().map_or(0, |e| e.occurred_at);
    let mut queues: Vec<VecDeque<Option<usize>>> = (0..n).map(|_| VecDeque::new()).collect();
    for (i, ev) in evs.iter().enumerate() {
        let p = (crate::rules::fingerprint(&ev.employee_id) % n as u64) as u32;
        queues[p as usize].push_back(Some(i));
    }
    for q in &mut queues {
        q.push_back(None);
    }
    let mut waiting: Vec<Option<i64>> = vec![None; n as usize];
    loop {
        let mut progressed = false;
        for p in 0..n {
            let pu = p as usize;
            if let Some(d) = waiting[pu] {
                match table.through {
                    Some(t) if t >= d => {
                        let figures = table.figures(engines[pu].population_closed_through(), t);
                        engines[pu].population_closed(t, figures, &mut out);
                        publish(&mut engines, &mut channels, p);
                        waiting[pu] = None;
                        progressed = true;
                    }
                    _ => continue,
                }
            }
            while let Some(&step) = queues[pu].front() {
                let blocked = match step {
                    Some(i) => engines[pu].blocked_by(evs[i].occurred_at),
                    None => engines[pu].blocked_at(end),
                };
                if let Some(d) = blocked {
                    engines[pu].close_share(d);
                    let (shares, closed) = engines[pu].take_shares();
                    for (day, f) in shares {
                        table.share(pu, day, f);
                    }
                    table.closed(pu, closed.unwrap_or(d));
                    waiting[pu] = Some(d);
                    progressed = true;
                    break;
                }
                match step {
                    Some(i) => {
                        let k = engines[pu].keys(&evs[i]);
                        engines[pu].apply_at(&evs[i], k, (0, i as i64), &mut out);
                    }
                    None => engines[pu].advance(end, &mut out),
                }
                publish(&mut engines, &mut channels, p);
                queues[pu].pop_front();
                progressed = true;
                // Channels run at different speeds (some far behind the others), as
                // partitions of instances with different loads do.
                for ch in 0..(n * n) as usize {
                    if rng.next(1 + (ch as u64 * 7919 + seed) % 400) == 0 {
                        while channels[ch].len() > 1 && rng.next(8) != 0 {
                            deliver(&mut engines, &mut channels, ch, &mut out);
                        }
                    }
                }
                // Partitions take turns at random lengths.
                if rng.next(16) == 0 {
                    break;
                }
            }
        }
        if queues.iter().all(VecDeque::is_empty) && waiting.iter().all(Option::is_none) {
            break;
        }
        assert!(progressed, "the population barrier holds every partition");
    }
    for ch in 0..(n * n) as usize {
        while !channels[ch].is_empty() {
            deliver(&mut engines, &mut channels, ch, &mut out);
        }
    }
    out
}

fn one_engine(s: &Settings, evs: &[Event<'_>]) -> Vec<Output> {
    let mut e = Engine::from_settings(s, None);
    let mut out = Vec::new();
    for ev in evs {
        e.apply(ev, &mut out);
    }
    let end = evs.last().map_or(0, |e| e.occurred_at);
    e.advance(end, &mut out);
    out
}

#[test]
fn group_triggers_do_not_depend_on_the_partitioning_or_the_delivery_order() {
    let mut s = Settings::default();
    s.audit.enabled = true;
    let evs = events(300, 100, 12);
    let want = by_id(&one_engine(&s, &evs));
    let groups = want
        .values()
        .filter(|t| t.scope != crate::trigger::Scope::Employee)
        .count();
    assert!(groups >= 2, "the stream has group triggers ({groups})");
    eprintln!("{} triggers, {groups} of groups", want.len());
    for (n, seed) in [(1, 1), (3, 2), (6, 3), (6, 4)] {
        let got = by_id(&partitioned(&s, &evs, n, seed));
        same_triggers(&want, &got, &format!("{n} partitions"));
    }
}

/// A contribution after the stage's time waits in the buffer until every source's watermark
/// has passed it: a member first seen tomorrow in one partition is not a member today, when
/// another partition has not finished today yet.
#[test]
fn a_contribution_waits_until_every_source_has_passed_it() {
    use crate::rules::group::{GroupRef, What};
    let s = Settings::default();
    let mut e = Engine::from_settings(&s, None);
    e.publish_contributions(0, 2);
    let day = crate::time::DAY;
    let d = 20_000 * day;
    let mut out = Vec::new();
    let c = |emp: u64, at: Ts| Contribution {
        group: GroupRef::Team("t1".into()),
        emp,
        at,
        eid: emp,
        what: What::Seen,
    };
    e.receive(c(1, d + 3_600_000), Some((0, 0, 1, 0)), None, &mut out);
    assert_eq!(e.buffered_contributions(), 1, "no time yet: it waits");
    e.source_watermark(0, d + 2 * day, &mut out);
    e.source_watermark(1, d + 12 * 3_600_000, &mut out);
    assert_eq!(
        e.group_watermark(),
        Some(d + 12 * 3_600_000),
        "the least of the two"
    );
    assert_eq!(
        e.groups.fingerprints(),
        vec![1],
        "the one before the stage's time went"
    );
    e.receive(
        c(2, d + day + 3_600_000),
        Some((1, 0, 7, 0)),
        None,
        &mut out,
    );
    assert_eq!(e.buffered_contributions(), 1);
    assert_eq!(e.groups.fingerprints(), vec![1], "tomorrow's member waits");
    e.receive(
        c(2, d + day + 3_600_000),
        Some((1, 0, 7, 0)),
        None,
        &mut out,
    );
    assert_eq!(
        e.buffered_contributions(),
        1,
        "the same one again is not taken twice"
    );
    e.source_watermark(1, d + 2 * day, &mut out);
    assert_eq!(e.buffered_contributions(), 0);
    assert_eq!(e.groups.fingerprints(), vec![1, 2]);
    // Behind the stage's time (later than the lateness allowed): applied at once.
    e.receive(c(3, d), Some((1, 0, 8, 0)), None, &mut out);
    assert_eq!(e.groups.fingerprints(), vec![1, 2, 3]);
}

/// Once an erasure is applied, no contribution of the member — one made after the erasure's
/// time (an event processed before it, within the allowed lateness), or a late one — brings
/// them back; and a restore keeps that.
#[test]
fn an_erased_member_does_not_come_back() {
    use crate::rules::group::{GroupRef, What};
    let s = Settings::default();
    let mut e = Engine::from_settings(&s, None);
    e.publish_contributions(0, 1);
    let d = 20_000 * crate::time::DAY;
    let mut out = Vec::new();
    let c = |at: Ts, what: What, group: GroupRef, eid: u64| Contribution {
        group,
        emp: 7,
        at,
        eid,
        what,
    };
    let team = || GroupRef::Team("t1".into());
    e.receive(
        c(d, What::Seen, team(), 1),
        Some((0, 0, 1, 0)),
        None,
        &mut out,
    );
    // The erasure at 10:00 arrives after an event at 10:05 was made.
    e.receive(
        c(d + 36_300_000, What::ModuleStarted, team(), 3),
        Some((0, 0, 3, 0)),
        None,
        &mut out,
    );
    e.receive(
        c(d + 36_000_000, What::Erased, GroupRef::All, 2),
        Some((0, 0, 4, 0)),
        None,
        &mut out,
    );
    e.source_watermark(0, d + crate::time::DAY, &mut out);
    assert!(e.groups.fingerprints().is_empty(), "erased, and not back");
    e.receive(
        c(d + 3_600_000, What::Seen, team(), 9),
        Some((0, 0, 9, 0)),
        None,
        &mut out,
    );
    assert!(e.groups.fingerprints().is_empty(), "a late one neither");
    let mut log = Vec::new();
    e.checkpoint(&["in".to_string()], &[10], &mut log);
    let mut r = super::changelog::Restorer::default();
    for rec in &log {
        r.add(&rec.key, rec.value.as_deref()).unwrap();
    }
    let mut back = Engine::from_settings(&s, None);
    back.publish_contributions(0, 1);
    r.finish(&mut back, &["in".to_string()]);
    back.receive(
        c(d + 7_200_000, What::Seen, team(), 11),
        Some((0, 0, 11, 0)),
        None,
        &mut out,
    );
    assert!(back.groups.fingerprints().is_empty(), "nor after a restore");
}

/// The population's figures are everyone's whatever the partitioning: with an undeclared
/// holiday and an outage of a feed — feed gaps and population-relative thresholds both at
/// work — partitions behind the population barrier give the triggers of one engine. (And the
/// population does change the triggers here: without it, the holiday's would fire.)
#[test]
fn population_figures_do_not_depend_on_the_partitioning() {
    let mut s = Settings::default();
    s.audit.enabled = true;
    let mut evs = super::test_support::sim_events(&SimOptions {
        employees: 200,
        days: 110,
        seed: 5,
        pattern_share: 1.0,
        holiday: Some((80, 12)),
        outages: vec![(crate::rules::presence::Source::Tasks, 60, 5)],
        ..Default::default()
    });
    evs.sort_by_key(|e| e.occurred_at);
    let want = by_id(&one_engine(&s, &evs));
    let mut absolute = s.clone();
    absolute.population.relative = false;
    absolute.population.gap_share = 0.0;
    let without = by_id(&one_engine(&absolute, &evs));
    assert!(
        without.len() > want.len() + 10,
        "the population matters here: {} triggers without it, {} with",
        without.len(),
        want.len()
    );
    for (n, seed) in [(3, 7), (6, 8)] {
        let got = by_id(&partitioned(&s, &evs, n, seed));
        same_triggers(&want, &got, &format!("{n} partitions"));
    }
    eprintln!(
        "{} triggers with the population, {} without",
        want.len(),
        without.len()
    );
}
