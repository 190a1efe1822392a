//! Every metric momentd exports, in one place: names, help text, buckets, and one small typed
//! function per thing that happens. Labels are topics, partitions, event types, rules,
//! severities, reasons and outcomes — never an employee id or free text (docs/contract.md §6).

use std::time::Duration;

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

pub const EVENTS: &str = "momentd_events_consumed_total";
pub const DEAD_LETTERS: &str = "momentd_dead_letters_total";
pub const DUPLICATES: &str = "momentd_duplicate_events_total";
pub const TRIGGERS: &str = "momentd_triggers_total";
pub const AUDIT_RECORDS: &str = "momentd_audit_records_total";
pub const LATENCY: &str = "momentd_processing_latency_seconds";
pub const EVENT_TIME_LAG: &str = "momentd_event_time_lag_seconds";
pub const WATERMARK: &str = "momentd_watermark_timestamp_seconds";
pub const GROUP_WATERMARK: &str = "momentd_group_watermark_timestamp_seconds";
pub const GROUP_BUFFERED: &str = "momentd_group_contributions_waiting";
pub const REPARTITION_UNREADABLE: &str = "momentd_repartition_records_unreadable_total";
pub const CONSUMER_LAG: &str = "momentd_consumer_lag_messages";
pub const COMMITS: &str = "momentd_commits_total";
pub const REBALANCES: &str = "momentd_rebalances_total";
pub const ASSIGNED: &str = "momentd_assigned_partitions";
pub const READY: &str = "momentd_ready";
pub const TRACKED: &str = "momentd_tracked_employees";
pub const STATE_BYTES: &str = "momentd_state_bytes";
pub const PRODUCER_QUEUE: &str = "momentd_producer_queue_depth";
pub const PRODUCE_ERRORS: &str = "momentd_produce_errors_total";
pub const IN_FLIGHT: &str = "momentd_in_flight_messages";
pub const BUILD_INFO: &str = "momentd_build_info";
pub const RESTORE: &str = "momentd_partition_restore_seconds";
pub const RESTORED_RECORDS: &str = "momentd_changelog_records_restored_total";
pub const RESTORED_BYTES: &str = "momentd_changelog_bytes_restored_total";
pub const CHANGELOG_WRITTEN: &str = "momentd_changelog_records_written_total";
pub const CHANGELOG_CORRUPT: &str = "momentd_changelog_corrupt_records_total";
pub const RESTORING: &str = "momentd_partitions_restoring";
pub const SOURCE_GAPS: &str = "momentd_source_gap_days_total";
pub const POPULATION_CLOSED: &str = "momentd_population_closed_timestamp_seconds";
pub const POPULATION_WAITING: &str = "momentd_population_waiting_partitions";
pub const POPULATION_UNREADABLE: &str = "momentd_population_records_unreadable_total";

/// Buckets of the processing latency histogram, in seconds (a p99 SLO of 50 ms sits between
/// two of them).
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Buckets of the partition restore histogram, in seconds.
const RESTORE_BUCKETS: &[f64] = &[
    0.001, 0.01, 0.1, 0.5, 1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0,
];

/// Installs the Prometheus recorder and describes every metric. The handle renders
/// `/metrics`; [`upkeep`] must run now and then.
pub fn install() -> anyhow::Result<PrometheusHandle> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full(LATENCY.into()), LATENCY_BUCKETS)?
        .set_buckets_for_metric(Matcher::Full(RESTORE.into()), RESTORE_BUCKETS)?
        .install_recorder()?;
    describe();
    gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    gauge!(READY).set(0.0);
    gauge!(ASSIGNED).set(0.0);
    // Counters that alerts and panels take rates of start at 0, so a first occurrence is an
    // increase rather than a new series.
    for reason in crate::event::ErrorCode::ALL {
        counter!(DEAD_LETTERS, "reason" => reason.as_str()).increment(0);
    }
    for kind in ["triggers", "audit", "dead_letters", "changelog"] {
        counter!(PRODUCE_ERRORS, "kind" => kind).increment(0);
    }
    for result in ["ok", "error"] {
        for occasion in ["periodic", "revoke"] {
            counter!(COMMITS, "result" => result, "occasion" => occasion).increment(0);
        }
    }
    for kind in ["assign", "revoke", "error"] {
        counter!(REBALANCES, "kind" => kind).increment(0);
    }
    for kind in crate::engine::changelog::Written::KINDS {
        counter!(CHANGELOG_WRITTEN, "kind" => kind).increment(0);
    }
    counter!(RESTORED_RECORDS).increment(0);
    counter!(RESTORED_BYTES).increment(0);
    counter!(CHANGELOG_CORRUPT).increment(0);
    gauge!(RESTORING).set(0.0);
    for source in crate::rules::presence::Source::ALL {
        counter!(SOURCE_GAPS, "source" => source.as_str()).increment(0);
    }
    counter!(POPULATION_UNREADABLE).increment(0);
    gauge!(POPULATION_WAITING).set(0.0);
    Ok(handle)
}

/// Drains the histograms' buffers so rendering stays cheap; run every few seconds.
pub async fn upkeep(handle: PrometheusHandle) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tick.tick().await;
        handle.run_upkeep();
    }
}

fn describe() {
    describe_counter!(
        EVENTS,
        "Input messages consumed, by topic, event type and outcome (applied, duplicate, after_exit, erased, dead_letter)"
    );
    describe_counter!(
        DEAD_LETTERS,
        "Input messages sent to the dead-letter topic, by reason (the momentd-error header)"
    );
    describe_counter!(
        DUPLICATES,
        "Events ignored because their event_id was already seen for the employee within the dedup horizon"
    );
    describe_counter!(
        TRIGGERS,
        "Triggers acknowledged by the broker, by rule, severity and escalation"
    );
    describe_counter!(
        AUDIT_RECORDS,
        "Audit records acknowledged by the broker, by rule and decision"
    );
    describe_histogram!(
        LATENCY,
        metrics::Unit::Seconds,
        "From the receipt of an input message to the broker's acknowledgement of the last output it caused"
    );
    describe_gauge!(
        EVENT_TIME_LAG,
        metrics::Unit::Seconds,
        "Wall clock minus the largest event time seen on the partition"
    );
    describe_gauge!(
        WATERMARK,
        metrics::Unit::Seconds,
        "The partition's watermark (event time, Unix seconds)"
    );
    describe_gauge!(
        GROUP_WATERMARK,
        metrics::Unit::Seconds,
        "The group stage's time of the partition's task: the least watermark of every employee partition (event time, Unix seconds)"
    );
    describe_gauge!(
        GROUP_BUFFERED,
        "Contributions waiting for the group stage's time to pass them"
    );
    describe_counter!(
        REPARTITION_UNREADABLE,
        "Records of the repartition topic that could not be read (logged with their offset, skipped)"
    );
    describe_gauge!(
        CONSUMER_LAG,
        "Messages between the partition's high watermark and the consumer's position (librdkafka statistics)"
    );
    describe_counter!(
        COMMITS,
        "Offset commits, by result (ok, error) and occasion (periodic; revoke, which also covers shutdown)"
    );
    describe_counter!(
        REBALANCES,
        "Consumer group rebalances, by kind (assign, revoke, error)"
    );
    describe_gauge!(
        ASSIGNED,
        "Topic-partitions assigned to this instance (input topics and the repartition topic)"
    );
    describe_gauge!(
        READY,
        "1 once partitions are assigned and their state is ready (what /readyz answers)"
    );
    describe_gauge!(
        TRACKED,
        "Employees with state on the partition (exit tombstones included)"
    );
    describe_gauge!(
        STATE_BYTES,
        metrics::Unit::Bytes,
        "Serialized bytes of the partition's employee state"
    );
    describe_gauge!(
        PRODUCER_QUEUE,
        "Messages in the producer's queue, not yet acknowledged by the broker"
    );
    describe_counter!(
        PRODUCE_ERRORS,
        "Produce attempts that failed and were retried, by topic kind (triggers, dead_letters, audit)"
    );
    describe_gauge!(
        IN_FLIGHT,
        "Input messages processed whose outputs the broker has not acknowledged yet"
    );
    describe_gauge!(
        BUILD_INFO,
        "Always 1; the version label says which build runs"
    );
    describe_histogram!(
        RESTORE,
        metrics::Unit::Seconds,
        "From a partition's assignment to its task being ready with its state restored from the changelog"
    );
    describe_counter!(
        RESTORED_RECORDS,
        "Changelog records read while restoring partitions' state"
    );
    describe_counter!(
        RESTORED_BYTES,
        metrics::Unit::Bytes,
        "Bytes of changelog records (keys and values) read while restoring"
    );
    describe_counter!(
        CHANGELOG_WRITTEN,
        "Changelog records acknowledged by the broker, by kind (employee, group, erased, evicted: tombstones of state.idle_ttl, clock)"
    );
    describe_counter!(
        CHANGELOG_CORRUPT,
        "Changelog records that could not be read on restore and were skipped (logged with partition and offset)"
    );
    describe_counter!(
        SOURCE_GAPS,
        "UTC days found to be feed gaps of a rollup source: far fewer employees sent one than on the same weekday over the previous 8 weeks (docs/contract.md §8); left out of that source's windows for everyone"
    );
    describe_gauge!(
        POPULATION_CLOSED,
        metrics::Unit::Seconds,
        "The end of the last UTC day every task has closed (the population topic): no task's watermark passes the end of the day after it"
    );
    describe_gauge!(
        POPULATION_WAITING,
        "Partitions of this instance holding their input until the population closes a day (the slowest partitions hold the others back)"
    );
    describe_counter!(
        POPULATION_UNREADABLE,
        "Records of the population topic that could not be read (skipped, logged with their offset)"
    );
    describe_gauge!(
        RESTORING,
        "Partitions assigned to this instance whose state is being restored (/readyz is 503 meanwhile)"
    );
}

/// The labels that say which input partition a figure is about.
#[derive(Debug, Clone)]
pub struct PartitionLabels {
    pub topic: String,
    pub partition: String,
}

impl PartitionLabels {
    pub fn new(topic: &str, partition: i32) -> PartitionLabels {
        PartitionLabels {
            topic: topic.to_string(),
            partition: partition.to_string(),
        }
    }
}

/// The per-event counters of one input topic, with their handles kept: looking a labelled
/// counter up in the registry costs more than the rest of an event's bookkeeping.
pub struct EventCounters {
    topic: String,
    events: std::collections::HashMap<(&'static str, &'static str), metrics::Counter>,
    dead_letters: std::collections::HashMap<&'static str, metrics::Counter>,
    duplicates: metrics::Counter,
    /// Counted since the last [`EventCounters::flush`], by (type, outcome): a batch adds to the
    /// shared counters once per distinct pair, not once per event (the counters are atomics
    /// every partition task touches).
    pending: Vec<(&'static str, &'static str, u64)>,
}

impl EventCounters {
    pub fn new(topic: &str) -> EventCounters {
        EventCounters {
            topic: topic.to_string(),
            events: Default::default(),
            dead_letters: Default::default(),
            duplicates: counter!(DUPLICATES, "topic" => topic.to_string()),
            pending: Vec::new(),
        }
    }

    /// Counts one event; it shows in the metrics at the next [`EventCounters::flush`].
    pub fn event(&mut self, kind: &'static str, outcome: &'static str) {
        // The names are static: compared by address first, which is what nearly always decides.
        let same = |a: &str, b: &str| std::ptr::eq(a, b) || a == b;
        match self
            .pending
            .iter_mut()
            .find(|(k, o, _)| same(k, kind) && same(o, outcome))
        {
            Some(e) => e.2 += 1,
            None => self.pending.push((kind, outcome, 1)),
        }
    }

    /// Adds what was counted since the last flush to the shared counters.
    pub fn flush(&mut self) {
        let topic = &self.topic;
        for (kind, outcome, n) in self.pending.drain(..) {
            self.events
                .entry((kind, outcome))
                .or_insert_with(
                    || counter!(EVENTS, "topic" => topic.clone(), "type" => kind, "outcome" => outcome),
                )
                .increment(n);
            if outcome == "duplicate" {
                self.duplicates.increment(n);
            }
        }
    }

    /// Counts a dead letter (an event of type `unknown`, outcome `dead_letter`, and its reason);
    /// the event count shows at the next flush, the reason at once.
    pub fn dead_letter(&mut self, reason: &'static str) {
        self.event("unknown", "dead_letter");
        self.dead_letters
            .entry(reason)
            .or_insert_with(|| counter!(DEAD_LETTERS, "reason" => reason))
            .increment(1);
    }
}

pub fn trigger_acked(rule: &str, severity: &str, escalation: u32) {
    counter!(TRIGGERS, "rule" => rule.to_string(), "severity" => severity.to_string(),
        "escalation" => escalation.to_string())
    .increment(1);
}

pub fn audit_acked(rule: &str, decision: &'static str) {
    counter!(AUDIT_RECORDS, "rule" => rule.to_string(), "decision" => decision).increment(1);
}

pub fn latency(d: Duration) {
    histogram!(LATENCY).record(d.as_secs_f64());
}

pub fn produce_error(kind: &'static str) {
    counter!(PRODUCE_ERRORS, "kind" => kind).increment(1);
}

pub fn commit(result: &'static str, occasion: &'static str) {
    counter!(COMMITS, "result" => result, "occasion" => occasion).increment(1);
}

pub fn rebalance(kind: &'static str) {
    counter!(REBALANCES, "kind" => kind).increment(1);
}

pub fn restored(d: Duration) {
    histogram!(RESTORE).record(d.as_secs_f64());
}

pub fn restored_records(records: u64, bytes: u64) {
    counter!(RESTORED_RECORDS).increment(records);
    counter!(RESTORED_BYTES).increment(bytes);
}

pub fn changelog_corrupt() {
    counter!(CHANGELOG_CORRUPT).increment(1);
}

pub fn changelog_written(w: &crate::engine::changelog::Written) {
    for (kind, n) in w.by_kind() {
        if n > 0 {
            counter!(CHANGELOG_WRITTEN, "kind" => kind).increment(n as u64);
        }
    }
}

pub fn restoring(n: usize) {
    gauge!(RESTORING).set(n as f64);
}

pub fn assigned(n: usize) {
    gauge!(ASSIGNED).set(n as f64);
}

pub fn ready(ready: bool) {
    gauge!(READY).set(if ready { 1.0 } else { 0.0 });
}

pub fn producer_queue(n: i32) {
    gauge!(PRODUCER_QUEUE).set(n as f64);
}

pub fn consumer_lag(topic: &str, partition: i32, lag: i64) {
    gauge!(CONSUMER_LAG, "topic" => topic.to_string(), "partition" => partition.to_string())
        .set(lag as f64);
}

/// The per-partition gauges, set together by the partition's task.
pub fn partition_gauges(
    l: &PartitionLabels,
    watermark_ms: Option<i64>,
    event_time_lag: Option<f64>,
    tracked: usize,
    in_flight: usize,
) {
    let labels = [
        ("topic", l.topic.clone()),
        ("partition", l.partition.clone()),
    ];
    if let Some(w) = watermark_ms {
        gauge!(WATERMARK, &labels).set(w as f64 / 1000.0);
    }
    if let Some(lag) = event_time_lag {
        gauge!(EVENT_TIME_LAG, &labels).set(lag);
    }
    gauge!(TRACKED, &labels).set(tracked as f64);
    gauge!(IN_FLIGHT, &labels).set(in_flight as f64);
}

pub fn group_gauges(l: &PartitionLabels, watermark_ms: Option<i64>, waiting: usize) {
    let labels = [
        ("topic", l.topic.clone()),
        ("partition", l.partition.clone()),
    ];
    if let Some(w) = watermark_ms {
        gauge!(GROUP_WATERMARK, &labels).set(w as f64 / 1000.0);
    }
    gauge!(GROUP_BUFFERED, &labels).set(waiting as f64);
}

/// The partition's watermark and its group stage's time, after each batch (the bench reads
/// how far the one trails the other).
pub fn watermarks(l: &PartitionLabels, watermark_ms: Option<i64>, group_ms: Option<i64>) {
    let labels = [
        ("topic", l.topic.clone()),
        ("partition", l.partition.clone()),
    ];
    if let Some(w) = watermark_ms {
        gauge!(WATERMARK, &labels).set(w as f64 / 1000.0);
    }
    if let Some(w) = group_ms {
        gauge!(GROUP_WATERMARK, &labels).set(w as f64 / 1000.0);
    }
}

pub fn population_unreadable() {
    counter!(POPULATION_UNREADABLE).increment(1);
}

pub fn population_closed(through: Option<i64>) {
    if let Some(d) = through {
        gauge!(POPULATION_CLOSED).set((crate::time::day_start(d + 1) / 1000) as f64);
    }
}

/// Partitions waiting for the population, up or down by one.
pub fn population_waiting(waiting: bool) {
    if waiting {
        gauge!(POPULATION_WAITING).increment(1.0);
    } else {
        gauge!(POPULATION_WAITING).decrement(1.0);
    }
}

/// A feed gap of `source` found (once per day and source in this process: every task finds
/// the same ones, in day order).
pub fn source_gap(day: i64, source: crate::rules::presence::Source) -> bool {
    use std::sync::atomic::{AtomicI64, Ordering};
    static LAST: [AtomicI64; 2] = [AtomicI64::new(i64::MIN), AtomicI64::new(i64::MIN)];
    if LAST[source as usize].fetch_max(day, Ordering::AcqRel) >= day {
        return false;
    }
    counter!(SOURCE_GAPS, "source" => source.as_str()).increment(1);
    true
}

pub fn repartition_unreadable() {
    counter!(REPARTITION_UNREADABLE).increment(1);
}

pub fn state_bytes(l: &PartitionLabels, bytes: usize) {
    gauge!(STATE_BYTES, "topic" => l.topic.clone(), "partition" => l.partition.clone())
        .set(bytes as f64);
}

/// A revoked partition's gauges go to zero (its state is dropped).
pub fn partition_revoked(l: &PartitionLabels) {
    partition_gauges(l, None, None, 0, 0);
    state_bytes(l, 0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_of_changelog_record_is_counted() {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        let written = crate::engine::changelog::Written {
            employees: 1,
            groups: 2,
            erased: 3,
            evicted: 4,
            buffered: 5,
            clock: 6,
            population: 7,
        };
        metrics::with_local_recorder(&recorder, || changelog_written(&written));
        let text = handle.render();
        for (kind, n) in written.by_kind() {
            let line = format!("{CHANGELOG_WRITTEN}{{kind=\"{kind}\"}} {n}");
            assert!(text.contains(&line), "{line} missing from\n{text}");
        }
    }
}
