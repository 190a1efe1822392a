//! Restore bench (`cargo bench --bench restore`): how long `momentd run` takes to be ready when
//! its changelog holds N employees with 90 days of history, against a plain consumer reading
//! the same changelog topic in the same run. librdkafka's mock cluster runs in its own process;
//! it keeps about 5 MB per partition, so the employees are spread over enough partitions.
//!
//! The records: a simulated workforce of 2,000 employees over 90 days applied to an engine and
//! checkpointed, each employee's record then written under N / 2,000 different keys (restore
//! cost depends on the records' number and size, not on whose they are).
//!
//! `EMPLOYEES=100000,1000000` (the default) chooses the sizes. Each ends with a line
//! `restore: N employees in S s (R employees/s), X of the plain read`.

#[path = "support.rs"]
mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use support::*;

/// The daemon's allocator, so the in-process figures are the daemon's.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Employees' changelog records (key, value) of a 90-day history, and the clock record of
/// their checkpoint (every partition of the bench gets one: a restore takes the deadlines the
/// employee records give only under the clock's rules).
fn template() -> (Vec<(Vec<u8>, Vec<u8>)>, (Vec<u8>, Vec<u8>)) {
    let sim = momentd::sim::simulate(&momentd::sim::SimOptions {
        employees: 2_000,
        days: 90,
        seed: 3,
        ..Default::default()
    });
    let settings = momentd::config::Settings::default();
    let mut engine = momentd::Engine::from_settings(&settings, None);
    let mut out = Vec::new();
    for r in &sim.records {
        if let momentd::sim::Record::Event(e) = r {
            engine.apply(e, &mut out);
        }
    }
    let mut recs = Vec::new();
    engine.checkpoint(&["hr.interactions".to_string()], &[1], &mut recs);
    let clock = recs
        .iter()
        .find(|r| r.key == momentd::engine::changelog::CLOCK_KEY)
        .and_then(|r| Some((r.key.clone(), r.value.clone()?)))
        .expect("a clock record");
    let employees = recs
        .into_iter()
        .filter(|r| r.key.first() == Some(&b'e'))
        .filter_map(|r| Some((r.key, r.value?)))
        .collect();
    (employees, clock)
}

fn run(employees: usize, template: &[(Vec<u8>, Vec<u8>)], clock: &(Vec<u8>, Vec<u8>)) {
    // Some 8,000 records a partition: about 3 MB, inside the mock's per-partition limit.
    let partitions = employees.div_ceil(8_000).max(1) as i32;
    let changelog = format!("bench-restore-{employees}-state-changelog");
    let group = format!("bench-restore-{employees}");
    // The broker serves while its stdin is open: `_create` holds it (a bare `_` would drop it).
    let (_broker, bootstrap, _create) = mock_broker(&[
        format!("hr.interactions:{partitions}"),
        format!("{changelog}:{partitions}"),
        "hr.triggers:1".into(),
        "hr.interactions.dlq:1".into(),
    ]);

    // Fill the changelog.
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("linger.ms", "20")
        .set("queue.buffering.max.messages", "1000000")
        .set("compression.type", "lz4")
        .create()
        .unwrap();
    let mut bytes = 0usize;
    for i in 0..employees {
        let (k, v) = &template[i % template.len()];
        let mut key = k.clone();
        // A distinct employee key per copy.
        let n = (i / template.len()) as u32;
        for (b, x) in key[1..5].iter_mut().zip(n.to_be_bytes()) {
            *b ^= x;
        }
        bytes += key.len() + v.len();
        let mut rec = Some(
            BaseRecord::<[u8], [u8]>::to(&changelog)
                .partition(i as i32 % partitions)
                .key(key.as_slice())
                .payload(v.as_slice()),
        );
        while let Some(r) = rec.take() {
            if let Err((_, back)) = p.send(r) {
                rec = Some(back);
                p.poll(Duration::from_millis(5));
            }
        }
        p.poll(Duration::ZERO);
    }
    for part in 0..partitions {
        let (k, v) = clock;
        let rec = BaseRecord::<[u8], [u8]>::to(&changelog)
            .partition(part)
            .key(k.as_slice())
            .payload(v.as_slice());
        if p.send(rec).is_err() {
            p.flush(Duration::from_secs(60)).unwrap();
            let rec = BaseRecord::<[u8], [u8]>::to(&changelog)
                .partition(part)
                .key(k.as_slice())
                .payload(v.as_slice());
            p.send(rec).map_err(|(e, _)| e).expect("clock record");
        }
    }
    p.flush(Duration::from_secs(120)).unwrap();
    eprintln!(
        "restore bench: {employees} employee records ({:.0} MB, {:.0} bytes each) in {changelog} ({partitions} partitions)",
        bytes as f64 / 1e6,
        bytes as f64 / employees as f64
    );

    // The baseline: a plain consumer reading the whole topic.
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", "bench-plain-read")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for part in 0..partitions {
        tpl.add_partition_offset(&changelog, part, Offset::Beginning)
            .unwrap();
    }
    let t0 = Instant::now();
    c.assign(&tpl).unwrap();
    let mut read = 0;
    while read < employees + partitions as usize {
        if let Some(Ok(_)) = c.poll(Duration::from_millis(100)) {
            read += 1;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(300),
            "plain read stalled at {read}"
        );
    }
    let plain = t0.elapsed().as_secs_f64();
    drop(c);
    eprintln!("restore bench: plain consumer read {employees} records in {plain:.2} s");

    // momentd run: from its start to /readyz 200 (every partition restored).
    let http = format!("127.0.0.1:{}", free_port());
    let log = std::env::temp_dir().join(format!("momentd-restore-bench-{employees}.log"));
    let t_start_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let t0 = Instant::now();
    let daemon = Command::new(env!("CARGO_BIN_EXE_momentd"))
        .args(["run", "--config", "config/momentd.toml"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("MOMENTD__KAFKA__BROKERS", &bootstrap)
        .env("MOMENTD__KAFKA__GROUP_ID", &group)
        .env("MOMENTD__STATE__CHANGELOG_TOPIC", &changelog)
        // The employee state's restore is what is measured (the template's clock is for the
        // input topic alone).
        .env("MOMENTD__STATE__REPARTITION", "false")
        .env("MOMENTD__HTTP__LISTEN", &http)
        .env("RUST_LOG", "info")
        .env("MOMENTD__LOG__FORMAT", "json")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
        .spawn()
        .expect("momentd run");
    let _daemon = Proc(daemon);
    let mut live_at = None;
    loop {
        match get(&http, "/readyz") {
            Some((200, _)) => break,
            Some(_) if live_at.is_none() => live_at = Some(t0.elapsed().as_secs_f64()),
            _ => {}
        }
        assert!(t0.elapsed() < Duration::from_secs(600), "never ready");
        std::thread::sleep(Duration::from_millis(20));
    }
    let ready = t0.elapsed().as_secs_f64();
    let restored = metric(&http, "momentd_changelog_records_restored_total");
    let tracked = metric(&http, "momentd_tracked_employees");
    let rss = vm_mib(_daemon.0.id(), "VmRSS");
    eprintln!(
        "restore bench: momentd run ready after {ready:.2} s ({} to serve HTTP), {restored} records restored, {tracked} employees tracked (gauges lag a tick), RSS {rss:.0} MiB",
        live_at.map_or("-".into(), |t| format!("{t:.2} s")),
    );
    assert_eq!(
        restored as usize,
        employees + partitions as usize,
        "every record restored"
    );
    // From the log: when the partitions were assigned, and each restore's own time.
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .collect();
    let at = |msg: &str| -> Vec<i64> {
        lines
            .iter()
            .filter(|v| v["fields"]["message"] == msg)
            .filter_map(|v| momentd::time::parse_rfc3339(v["timestamp"].as_str()?))
            .collect()
    };
    let assigned = at("partition assigned").into_iter().min().unwrap_or(0);
    let restored_at = at("state restored from the changelog");
    let last = restored_at.iter().copied().max().unwrap_or(0);
    let restore = (last - assigned) as f64 / 1000.0;
    eprintln!(
        "restore bench: {} partitions restored {restore:.2} s after their assignment ({:.2} s after the start: start-up and the group's join take the rest)",
        restored_at.len(),
        (assigned as f64 / 1000.0) - (t_start_ms as f64 / 1000.0)
    );
    println!(
        "restore: {employees} employees in {restore:.2} s ({:.0} employees/s), {:.2} of the plain read (ready {ready:.2} s after the start)",
        employees as f64 / restore,
        restore / plain
    );
}

fn main() {
    let sizes: Vec<usize> = std::env::var("EMPLOYEES")
        .unwrap_or_else(|_| "100000,1000000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let (t, clock) = template();
    eprintln!(
        "restore bench: {} template records, {:.0} bytes each",
        t.len(),
        t.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>() as f64 / t.len() as f64
    );
    // The engine's share, without Kafka: the records decoded and the engine rebuilt.
    let n = 200_000;
    let t0 = Instant::now();
    let mut r = momentd::engine::changelog::Restorer::default();
    for i in 0..n {
        let (k, v) = &t[i % t.len()];
        let mut key = k.clone();
        for (b, x) in key[1..5]
            .iter_mut()
            .zip(((i / t.len()) as u32).to_be_bytes())
        {
            *b ^= x;
        }
        r.add(&key, Some(v)).unwrap();
    }
    r.add(&clock.0, Some(&clock.1)).unwrap();
    let decoded = t0.elapsed().as_secs_f64();
    let mut e = momentd::Engine::from_settings(&momentd::config::Settings::default(), None);
    r.finish(&mut e, &["hr.interactions".to_string()]);
    let built = t0.elapsed().as_secs_f64() - decoded;
    eprintln!(
        "restore bench: in process, {n} records: decode {:.2} us each, engine rebuilt {:.2} us each (one core)",
        decoded / n as f64 * 1e6,
        built / n as f64 * 1e6
    );
    for n in sizes {
        run(n, &t, &clock);
    }
}
