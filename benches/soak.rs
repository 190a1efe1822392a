//! Soak (issue 16): `momentd run` for `SOAK_MINUTES` (30) at a steady `RATE` (20,000) events/s
//! on the mock cluster (in its own process), with a second instance joining the group and
//! leaving it (SIGTERM) every `REBALANCE_MINUTES` (5). Each minute it samples the first
//! instance's RSS, the input's consumer lag (end offsets minus the group's committed offsets,
//! read from the broker), and the p99 of the daemons' own processing latency over that minute
//! (receipt -> outputs acknowledged; histogram deltas of both instances), and prints them as a
//! table; at the end, each column's trend over the minutes after the warm-up.
//!
//! The load: `momentd::synth::everyday` for `EMPLOYEES` (50,000) people, one week generated and
//! replayed week after week with its times moved on (event time runs far faster than wall
//! time: a simulated day every few seconds), ending near now so that `run`'s future guard takes
//! every event.
//!
//! Run: `cargo bench --bench soak` (takes `SOAK_MINUTES` + about a minute).

#[path = "support.rs"]
mod support;

use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::TopicPartitionList;

use momentd::time::DAY;
use support::*;

const INPUT: &str = "hr.interactions";
/// The mock cluster keeps about 5 MB a partition and deletes older segments: enough
/// partitions that a rebalance's pause does not outlast what the topic keeps.
const PARTITIONS: i32 = 24;
const GROUP: &str = "soak";
/// The input events the daemons consumed (a prefix of the series).
const CONSUMED: &str = "momentd_events_consumed_total{topic=\"hr.interactions\"";

/// The group's lag on the input: end offsets minus committed offsets, summed.
fn lag(c: &BaseConsumer) -> Option<i64> {
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition(INPUT, p);
    }
    let committed = c.committed_offsets(tpl, Duration::from_secs(5)).ok()?;
    let mut total = 0;
    for e in committed.elements() {
        let (_, high) = c
            .fetch_watermarks(INPUT, e.partition(), Duration::from_secs(5))
            .ok()?;
        total += high - e.offset().to_raw().filter(|&o| o >= 0).unwrap_or(0);
    }
    Some(total)
}

/// A daemon of the group, on its own HTTP port.
fn daemon(bootstrap: &str, http: &str) -> Proc {
    Proc(
        std::process::Command::new(env!("CARGO_BIN_EXE_momentd"))
            .args(["run", "--config", "config/momentd.toml"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("MOMENTD__KAFKA__BROKERS", bootstrap)
            .env("MOMENTD__KAFKA__GROUP_ID", GROUP)
            .env("MOMENTD__KAFKA__CREATE_TOPICS", "false")
            .env("MOMENTD__HTTP__LISTEN", http)
            .env(
                "MOMENTD__KAFKA__CLIENT__FETCH_WAIT_MAX_MS",
                env_or("FETCH_WAIT_MS", "5"),
            )
            .env(
                "MOMENTD__KAFKA__CLIENT__LINGER_MS",
                env_or("DAEMON_LINGER_MS", "5"),
            )
            // The mock cluster holds every rebalance of a group that is up for the session
            // timeout less a second (`rd_kafka_mock_cgrp_classic_rebalance`), where a broker
            // moves on once every member has rejoined: at librdkafka's 45 s default a join or
            // a leave would stop the group for 44 s — longer than the mock keeps the input at
            // this rate (5 MB a partition, ~25 s), so the group would resume behind the log's
            // start. 6 s is the lowest a broker accepts by default.
            .env("MOMENTD__KAFKA__CLIENT__SESSION_TIMEOUT_MS", "6000")
            .env(
                "MOMENTD__KAFKA__COMMIT_INTERVAL",
                env_or("COMMIT_INTERVAL", "1s"),
            )
            .env("RUST_LOG", env_or("SOAK_LOG", "warn"))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("momentd run"),
    )
}

/// Per instance, the latency histogram's last cumulative buckets: this minute's counts are
/// the difference (a restarted instance starts from zero).
fn minute_buckets(now: &[(f64, f64)], before: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let restarted = now.last().map_or(0.0, |x| x.1) < before.last().map_or(0.0, |x| x.1);
    now.iter()
        .map(|&(le, c)| {
            let b = if restarted {
                0.0
            } else {
                before.iter().find(|x| x.0 == le).map_or(0.0, |x| x.1)
            };
            (le, c - b)
        })
        .collect()
}

/// Least-squares slope of `ys` per step, as a share of their mean.
fn relative_slope(ys: &[f64]) -> f64 {
    let n = ys.len() as f64;
    let mx = (n - 1.0) / 2.0;
    let my = ys.iter().sum::<f64>() / n;
    let (mut num, mut den) = (0.0, 0.0);
    for (i, y) in ys.iter().enumerate() {
        num += (i as f64 - mx) * (y - my);
        den += (i as f64 - mx).powi(2);
    }
    if den == 0.0 || my == 0.0 {
        0.0
    } else {
        num / den / my
    }
}

fn main() {
    let minutes = env_num("SOAK_MINUTES", 30);
    let every = env_num("REBALANCE_MINUTES", 5).max(1);
    let rate = env_num("RATE", 20_000) as f64;
    let employees = env_num("EMPLOYEES", 50_000) as u32;
    let warmup = env_num("WARMUP_MINUTES", 5).min(minutes.saturating_sub(3));

    let (broker, bootstrap, mut create) = mock_broker(&[
        format!("{INPUT}:{PARTITIONS}"),
        "hr.triggers:1".into(),
        "hr.interactions.dlq:1".into(),
    ]);
    create(&format!("{GROUP}-state-changelog"), PARTITIONS);
    create(&format!("{GROUP}-groups-repartition"), PARTITIONS);
    create(&format!("{GROUP}-population"), 1);

    // One week of everyday behaviour, replayed with its times moved on week by week so that
    // the stream ends near now.
    let week = momentd::synth::everyday(employees, 7, 7);
    let per_second_days = rate / (week.len() as f64 / 7.0);
    let span_days = (minutes as f64 * 60.0 * per_second_days).ceil() as i64 + 7;
    let now = momentd::time::day_start(momentd::time::day_of(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64,
    ));
    let first = week.first().map_or(0, |e| {
        momentd::time::day_start(momentd::time::day_of(e.occurred_at))
    });
    let shift0 = now - span_days * DAY - first;
    eprintln!(
        "soak: {minutes} min at {rate:.0} events/s, {employees} employees ({} events a week: a simulated day every {:.1} s), an instance joining or leaving every {every} min",
        week.len(),
        1.0 / per_second_days
    );

    let http_a = format!("127.0.0.1:{}", free_port());
    let http_b = format!("127.0.0.1:{}", free_port());
    let a = daemon(&bootstrap, &http_a);
    let pid_a = a.0.id();
    let mut b: Option<Proc> = None;

    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        // The mock cluster finds a fetch's offset by walking the partition's batches from the
        // oldest (librdkafka's `rd_kafka_mock_msgset_find`, "FIXME: Maintain an index"): at
        // 20,000 events/s over 24 partitions, librdkafka's default 5 ms linger makes batches
        // of ~4 events, thousands per partition to walk on every fetch. Larger batches keep
        // the broker's cost out of what is measured.
        .set("linger.ms", env_or("LINGER_MS", "50"))
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .unwrap();
    let watcher: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", GROUP)
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();

    let began = Instant::now();
    let mut sent: u64 = 0;
    let mut next_sample = began + Duration::from_secs(60);
    // SOAK_TRACE=1: every 10 s, what was sent, the lag, and what each instance consumed.
    let trace = std::env::var("SOAK_TRACE").is_ok();
    let mut next_trace = began + Duration::from_secs(10);
    let mut minute = 0;
    let mut last = [Vec::new(), Vec::new()];
    let mut rows: Vec<(u64, f64, i64, f64, f64)> = Vec::new();
    println!("minute | instances | RSS A (MiB) | of it lazily freed | consumer lag (messages) | p99 latency (ms) | events sent");
    println!("---|---|---|---|---|---|---");
    // Until the last minute's row is printed.
    while minute < minutes {
        // Produce what is due by now.
        let due = (began.elapsed().as_secs_f64() * rate) as u64;
        while sent < due {
            let i = (sent % week.len() as u64) as usize;
            let w = sent / week.len() as u64;
            let mut ev = week[i].clone();
            ev.occurred_at += shift0 + w as i64 * 7 * DAY;
            ev.event_id = format!("{}-w{w}", ev.event_id).into();
            let json = momentd::event::encode_json(&ev);
            let rec = BaseRecord::to(INPUT)
                .key(ev.employee_id.as_bytes())
                .payload(json.as_bytes());
            if producer.send(rec).is_err() {
                producer.poll(Duration::from_millis(5));
                continue;
            }
            sent += 1;
        }
        producer.poll(Duration::ZERO);
        if trace && Instant::now() >= next_trace {
            next_trace += Duration::from_secs(10);
            eprintln!(
                "trace {:>4}s sent {sent} lag {} consumed A {} B {}",
                began.elapsed().as_secs(),
                lag(&watcher).unwrap_or(-1),
                metric(&http_a, CONSUMED),
                b.as_ref().map_or(0.0, |_| metric(&http_b, CONSUMED)),
            );
        }
        if Instant::now() >= next_sample {
            minute += 1;
            next_sample += Duration::from_secs(60);
            let rss = vm_mib(pid_a, "VmRSS");
            let lazy = lazy_free_mib(pid_a);
            let lag = lag(&watcher).unwrap_or(-1);
            let mut merged: Vec<(f64, f64)> = Vec::new();
            for (i, http) in [&http_a, &http_b].into_iter().enumerate() {
                let now = buckets(http, "momentd_processing_latency_seconds");
                let d = minute_buckets(&now, &last[i]);
                for (le, c) in d {
                    match merged.iter_mut().find(|x| x.0 == le) {
                        Some(x) => x.1 += c,
                        None => merged.push((le, c)),
                    }
                }
                last[i] = now;
            }
            merged.sort_by(|x, y| x.0.total_cmp(&y.0));
            let p99 = bucket_quantile(&merged, 0.99) * 1000.0;
            let instances = 1 + b.is_some() as u8;
            println!("{minute} | {instances} | {rss:.0} | {lazy:.0} | {lag} | {p99:.0} | {sent}");
            rows.push((minute, rss, lag, p99, lazy));
            // The second instance joins, or leaves, every `every` minutes.
            if minute % every == 0 && minute < minutes {
                match b.take() {
                    Some(mut p) => {
                        // SIGTERM: it leaves the group as an operator's rollout would; waited
                        // for on a thread of its own, so the load does not pause.
                        let _ = std::process::Command::new("kill")
                            .arg(p.0.id().to_string())
                            .status();
                        std::thread::spawn(move || {
                            let _ = p.0.wait();
                        });
                        last[1].clear();
                    }
                    None => b = Some(daemon(&bootstrap, &http_b)),
                }
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    producer.flush(Duration::from_secs(30)).unwrap();
    drop(b);
    drop(a);
    drop(broker);

    // Trends after the warm-up: the slope per minute as a share of the mean, and the last
    // third's mean against the middle third's.
    type Row = (u64, f64, i64, f64, f64);
    let after: Vec<&Row> = rows.iter().filter(|r| r.0 > warmup).collect();
    let column = |f: &dyn Fn(&Row) -> f64| -> Vec<f64> { after.iter().map(|r| f(r)).collect() };
    for (name, ys) in [
        ("RSS", column(&|r| r.1)),
        // What the process holds: RSS less the pages mimalloc gave back lazily (MADV_FREE,
        // see `tune_allocator` in main.rs), which the kernel takes back when it needs them.
        ("RSS held (less lazily freed)", column(&|r| r.1 - r.4)),
        // (A minute whose lag could not be read, -1, is left out.)
        (
            "consumer lag",
            after
                .iter()
                .filter(|r| r.2 >= 0)
                .map(|r| r.2 as f64)
                .collect(),
        ),
        ("p99 latency", column(&|r| r.3)),
    ] {
        let n = ys.len();
        if n < 3 {
            continue;
        }
        let third = n / 3;
        let mean = |s: &[f64]| s.iter().sum::<f64>() / s.len().max(1) as f64;
        let (middle, last) = (mean(&ys[third..n - third]), mean(&ys[n - third..]));
        eprintln!(
            "soak: {name} after minute {warmup}: slope {:+.2} % of its mean a minute; last third's mean {last:.1} against the middle third's {middle:.1}",
            relative_slope(&ys) * 100.0
        );
    }
}
