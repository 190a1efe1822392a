//! The I/O shell of `momentd run`: rdkafka and tokio around the pure engine. It only moves
//! bytes, offsets and time.
//!
//! * A consumer thread ([`consumer`]) polls the group's consumer for rebalances and
//!   statistics, commits positions, and runs the lifecycle ([`lifecycle`]) — rebalance
//!   callbacks included.
//! * One tokio task per assigned partition ([`partition`]) reads the partition's own librdkafka
//!   queue ([`queue`]) in batches, decodes, applies, produces, and tracks which offsets may be
//!   committed ([`offsets`]): only those whose outputs the broker acknowledged (at-least-once;
//!   deterministic trigger ids make a redelivery produce the same ids).
//! * Shutdown: stop fetching, drain, commit, flush the producer — within `shutdown.timeout`.

pub mod changelog;
pub mod clients;
pub mod consumer;
pub mod lifecycle;
pub mod offsets;
pub mod output;
pub mod population;
pub mod queue;
pub mod repartition;
pub mod task;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context as _};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::engine::{Engine, Pseudonymizer};
use crate::time::Ts;

/// Wall-clock now, in milliseconds since the epoch (the shell's clock; the engine never reads
/// one).
pub fn now_ms() -> Ts {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as Ts)
        .unwrap_or(0)
}

/// The librdkafka configuration common to every client: brokers, then `kafka.client.*` as it
/// is (security settings, SASL, SSL, …).
pub fn client_config(s: &Settings) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &s.kafka.brokers);
    for (k, v) in &s.kafka.client {
        c.set(k, v);
    }
    c
}

fn consumer_config(s: &Settings) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("group.id", &s.kafka.group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("statistics.interval.ms", "5000")
        .set("enable.partition.eof", "false")
        // When the prefetched queue is over its limits (64 MB by default), librdkafka waits this
        // long before fetching those partitions again: at the default 1 s a consumer slower
        // than the fetcher — momentd decodes and applies every message — drained its queue
        // and then sat idle for most of a second (measured: 0.85 s stalls, throughput halved).
        .set("fetch.queue.backoff.ms", "20")
        // Each partition's task reads the partition's own queue (runtime::queue), and
        // librdkafka applies these prefetch limits to each such queue, not to the consumer as
        // a whole: its defaults (100,000 messages, 64 MiB) would let a backlog fill gigabytes
        // over a few dozen partitions. These keep a partition's prefetch to about a tenth of a
        // second of its work (bounding memory by partitions × 4 MiB); 2 MiB measured slower
        // (fetches then wait for the broker's long poll).
        .set("queued.max.messages.kbytes", "4096")
        .set("queued.min.messages", "20000");
    if s.task_topics().len() > 1 {
        // Partition p of every input topic goes to one member (configuration refuses another
        // strategy with several inputs). librdkafka's default, "range,roundrobin", picks
        // range too, but only while every member lists it first.
        c.set("partition.assignment.strategy", "range");
    }
    // Passed-through settings win (after the defaults above).
    for (k, v) in client_config(s).config_map() {
        c.set(k, v);
    }
    // These are how momentd keeps at-least-once; they are not for overriding.
    c.set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false");
    c
}

/// The producer: idempotent (no duplicates or reordering from its own retries).
pub fn producer_config(s: &Settings) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("compression.type", "lz4");
    for (k, v) in client_config(s).config_map() {
        c.set(k, v);
    }
    c
}

/// The topics momentd reads and writes, with whether each should be compacted (the state
/// changelog is).
pub fn topics(s: &Settings) -> Vec<(String, bool)> {
    let mut t: Vec<(String, bool)> = s
        .kafka
        .input_topics
        .iter()
        .map(|t| (t.clone(), false))
        .collect();
    t.push((s.kafka.output_topic.clone(), false));
    t.push((s.kafka.dlq_topic.clone(), false));
    if s.audit.enabled {
        t.push((s.audit.topic.clone(), false));
    }
    if s.state.changelog {
        t.push((s.changelog_topic(), true));
    }
    if s.state.repartition {
        t.push((s.repartition_topic(), false));
        t.push((s.population_topic(), true));
    }
    t
}

/// The input topics' partition count (the first input topic's, which `ensure_topics` checked
/// the others against). Blocking: run it off the async workers.
fn partition_count(s: &Settings) -> anyhow::Result<usize> {
    let admin: AdminClient<DefaultClientContext> = client_config(s)
        .create()
        .context("creating the Kafka admin client")?;
    let topic = &s.kafka.input_topics[0];
    let md = admin
        .inner()
        .fetch_metadata(Some(topic), s.kafka.startup_timeout.0)
        .context("fetching the input topic's metadata")?;
    let n = md.topics().first().map_or(0, |t| t.partitions().len());
    if n == 0 {
        bail!("the input topic {topic} has no partitions");
    }
    Ok(n)
}

/// One start-up step: logged, bounded by `kafka.startup_timeout`, given up when `shutdown` is
/// cancelled (`Ok(None)`), and named in its error.
async fn step<T>(
    s: &Settings,
    shutdown: &CancellationToken,
    name: &str,
    f: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<Option<T>> {
    let limit = s.kafka.startup_timeout.0;
    tracing::info!(step = name, brokers = %s.kafka.brokers, "start-up: waiting for the cluster");
    tokio::select! {
        _ = shutdown.cancelled() => {
            tracing::info!(step = name, "stopped during start-up");
            Ok(None)
        }
        r = tokio::time::timeout(limit, f) => match r {
            Ok(r) => r.map(Some).with_context(|| format!("start-up step \"{name}\"")),
            Err(_) => bail!(
                "start-up step \"{name}\" did not finish within kafka.startup_timeout ({}): is the cluster at kafka.brokers = {} reachable, and does it answer?",
                crate::config::Dur(limit),
                s.kafka.brokers
            ),
        },
    }
}

/// A blocking rdkafka call on a blocking thread.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .context("a start-up thread panicked")?
}

/// Co-partitioning (docs/contract.md §9): every input topic has the same partition count, and the
/// changelog (when it exists) has it too. `counts` holds the partition counts of the topics
/// that exist. Returns the input partition count, if any input topic exists.
pub fn check_partitions(
    s: &Settings,
    counts: &std::collections::HashMap<String, usize>,
) -> anyhow::Result<Option<usize>> {
    let inputs: Vec<(&str, usize)> = s
        .kafka
        .input_topics
        .iter()
        .filter_map(|t| counts.get(t).map(|&n| (t.as_str(), n)))
        .collect();
    if inputs.windows(2).any(|w| w[0].1 != w[1].1) {
        let list: Vec<String> = inputs.iter().map(|(t, n)| format!("{t}: {n}")).collect();
        bail!(
            "the input topics must have the same number of partitions (partition p of each feeds one task), but they have {}",
            list.join(", ")
        );
    }
    let n = inputs.first().map(|x| x.1);
    if s.state.repartition {
        let rt = s.repartition_topic();
        if let (Some(n), Some(&c)) = (n, counts.get(&rt)) {
            if c != n {
                bail!(
                    "the repartition topic {rt} has {c} partitions but the input topics have {n}: partition p of it is read by the task of input partition p. Give it {n} partitions (or, after adding input partitions, use a fresh one: state.repartition_topic)"
                );
            }
        }
    }
    if s.state.repartition {
        let pt = s.population_topic();
        if let Some(&c) = counts.get(&pt) {
            if c != 1 {
                bail!(
                    "the population topic {pt} has {c} partitions: it must have one (every task reads all of it, in one order). Use a topic of one partition (state.population_topic)"
                );
            }
        }
    }
    if s.state.changelog {
        let cl = s.changelog_topic();
        if let (Some(n), Some(&c)) = (n, counts.get(&cl)) {
            if c != n {
                bail!(
                    "the changelog topic {cl} has {c} partitions but the input topics have {n}: its partition p holds the state of input partition p. A changelog of another partition count cannot be used (after adding input partitions, start with a fresh changelog topic: state.changelog_topic)"
                );
            }
        }
    }
    Ok(n)
}

/// Checks that the topics exist; with `kafka.create_topics`, creates the missing ones.
pub async fn ensure_topics(s: &Settings) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = client_config(s)
        .create()
        .context("creating the Kafka admin client")?;
    let timeout = s.kafka.startup_timeout.0;
    let (admin, counts) = blocking(move || {
        let md = admin
            .inner()
            .fetch_metadata(None, timeout)
            .context("fetching cluster metadata (are kafka.brokers reachable?)")?;
        let counts: std::collections::HashMap<String, usize> = md
            .topics()
            .iter()
            .filter(|t| t.error().is_none() && !t.partitions().is_empty())
            .map(|t| (t.name().to_string(), t.partitions().len()))
            .collect();
        Ok((admin, counts))
    })
    .await?;
    let existing: HashSet<&str> = counts.keys().map(String::as_str).collect();
    let input_partitions = check_partitions(s, &counts)?;
    let missing: Vec<(String, bool)> = topics(s)
        .into_iter()
        .filter(|(t, _)| !existing.contains(t.as_str()))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let names: Vec<&str> = missing.iter().map(|(t, _)| t.as_str()).collect();
    if !s.kafka.create_topics {
        bail!(
            "topics {names:?} do not exist and kafka.create_topics is false: create them, or turn it on"
        );
    }
    let new: Vec<NewTopic<'_>> = missing
        .iter()
        .map(|(t, compacted)| {
            // Input topics and the changelog are co-partitioned: a missing one gets the
            // partition count of the inputs that exist.
            let co = s.kafka.input_topics.contains(t)
                || (s.state.changelog && *t == s.changelog_topic())
                || (s.state.repartition && *t == s.repartition_topic());
            let partitions = match input_partitions {
                _ if s.state.repartition && *t == s.population_topic() => 1,
                Some(n) if co => n as i32,
                _ => s.kafka.topic_partitions as i32,
            };
            let nt = NewTopic::new(
                t,
                partitions,
                TopicReplication::Fixed(s.kafka.topic_replication as i32),
            );
            if *compacted {
                nt.set("cleanup.policy", "compact")
            } else if s.state.repartition && *t == s.repartition_topic() {
                // Read once by its group task, re-read only from the last commit: a week
                // covers any outage worth surviving without a fresh start.
                nt.set("retention.ms", "604800000")
            } else {
                nt
            }
        })
        .collect();
    tracing::info!(topics = ?names, "creating topics");
    let results = admin
        .create_topics(
            &new,
            &AdminOptions::new()
                .operation_timeout(Some(s.kafka.startup_timeout.0))
                .request_timeout(Some(s.kafka.startup_timeout.0)),
        )
        .await
        .with_context(|| format!("creating topics {names:?}"))?;
    for r in results {
        match r {
            Ok(t) => tracing::info!(topic = %t, "created topic"),
            Err((t, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {
                tracing::debug!(topic = %t, "topic already exists")
            }
            Err((t, e)) => bail!("creating topic {t}: {e}"),
        }
    }
    Ok(())
}

/// What `run` shares with the HTTP endpoints.
#[derive(Clone, Default)]
pub struct Health {
    /// Partitions are assigned and their tasks run (the lifecycle's word).
    pub ready: Arc<AtomicBool>,
    /// Assigned partitions whose state is still being restored.
    pub restoring: Arc<std::sync::atomic::AtomicUsize>,
}

impl Health {
    /// `/readyz`: assigned, and no task restoring.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire) && self.restoring.load(Ordering::Acquire) == 0
    }

    /// Sets the lifecycle's word and the `momentd_ready` gauge.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
        self.publish();
    }

    fn publish(&self) {
        crate::metrics::ready(self.is_ready());
        crate::metrics::restoring(self.restoring.load(Ordering::Acquire));
    }

    /// A task starts restoring: not ready until [`Health::restored`].
    pub fn restoring(&self) {
        self.restoring.fetch_add(1, Ordering::AcqRel);
        self.publish();
    }

    pub fn restored(&self) {
        self.restoring.fetch_sub(1, Ordering::AcqRel);
        self.publish();
    }
}

/// Runs the daemon until `shutdown` is cancelled, then stops within `shutdown.timeout`:
/// no more fetching, in-flight work finished, positions committed, the producer flushed.
pub async fn run(
    settings: Settings,
    pseudonymizer: Option<Pseudonymizer>,
    health: Health,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    // Start-up: every step bounded, named, and given up on SIGTERM.
    if step(
        &settings,
        &shutdown,
        "cluster metadata and topics",
        ensure_topics(&settings),
    )
    .await?
    .is_none()
    {
        return Ok(());
    }
    let partitions = {
        let s = settings.clone();
        match step(
            &settings,
            &shutdown,
            "the input topics' partition count",
            blocking(move || partition_count(&s)),
        )
        .await?
        {
            Some(n) => n,
            None => return Ok(()),
        }
    };
    let producer = output::Producer::new(&producer_config(&settings))
        .context("creating the Kafka producer")?;
    let sink = output::Sink {
        producer: producer.clone(),
        output_topic: settings.kafka.output_topic.as_str().into(),
        dlq_topic: settings.kafka.dlq_topic.as_str().into(),
        audit_topic: settings
            .audit
            .enabled
            .then(|| settings.audit.topic.as_str().into()),
        encoding: settings.output.encoding,
    };
    let changelog_producer: Option<output::Producer> = if settings.state.changelog {
        Some(
            output::Producer::new(&producer_config(&settings))
                .context("creating the changelog's Kafka producer")?,
        )
    } else {
        None
    };
    let engine_settings = settings.clone();
    let task_topics = settings.task_topics();
    let shared = task::Shared {
        sink,
        inputs: task_topics.clone().into(),
        default_encoding: settings.input.default_encoding,
        max_event_bytes: settings.input.max_event_bytes,
        idle_timeout: settings.time.idle_timeout.0,
        engine: Arc::new(move || Engine::from_settings(&engine_settings, pseudonymizer.clone())),
        changelog: changelog_producer
            .clone()
            .map(|producer| changelog::Changelog {
                producer,
                topic: settings.changelog_topic().into(),
                inputs: task_topics.clone().into(),
                client: client_config(&settings),
                interval: settings.kafka.commit_interval.0,
                meta: Arc::default(),
                gate: Arc::new(changelog::Gate::new(
                    8 * std::thread::available_parallelism().map_or(2, |n| n.get()),
                )),
            }),
        repartition: match settings.state.repartition {
            true => Some(repartition::Repartition {
                topic: settings.repartition_topic().into(),
                partitions: partitions as u32,
            }),
            false => None,
        },
        population: match settings.state.repartition {
            true => Some(Arc::new(population::Population::start(
                &settings, partitions,
            )?)),
            false => None,
        },
        health: health.clone(),
    };
    let spawned = tokio_util::task::TaskTracker::new();
    let router = consumer::Router::new(
        tokio::runtime::Handle::current(),
        spawned.clone(),
        shared,
        settings
            .kafka
            .drain_timeout
            .0
            .min(settings.shutdown.timeout.0),
        health.clone(),
        settings.kafka.split_partition_queues,
    );
    let consumer: Arc<BaseConsumer<consumer::Ctx>> = Arc::new(
        consumer_config(&settings)
            .create_with_context(consumer::Ctx {
                router: Mutex::new(Some(router)),
                wakers: Mutex::default(),
            })
            .context("creating the Kafka consumer")?,
    );
    let topics: Vec<&str> = task_topics.iter().map(String::as_str).collect();
    consumer
        .subscribe(&topics)
        .context("subscribing to the input topics")?;
    tracing::info!(topics = ?topics, group = %settings.kafka.group_id, "consuming");

    let stop = Arc::new(AtomicBool::new(false));
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let thread = {
        let stop = Arc::clone(&stop);
        let interval = settings.kafka.commit_interval.0;
        let producer = producer.clone();
        std::thread::Builder::new()
            .name("momentd-consumer".into())
            .spawn(move || {
                consumer::consume(consumer, stop, interval, producer);
                let _ = done_tx.send(());
            })
            .context("starting the consumer thread")?
    };
    let mut done_rx = done_rx;
    tokio::select! {
        _ = shutdown.cancelled() => {}
        _ = &mut done_rx => bail!("the consumer thread ended unexpectedly"),
    }
    let started = tokio::time::Instant::now();
    let budget = settings.shutdown.timeout.0;
    stop.store(true, Ordering::Release);
    health.set_ready(false);
    // The consumer thread drains (bounded by the drain timeout, itself within the budget).
    if tokio::time::timeout(budget, &mut done_rx).await.is_err() {
        tracing::warn!("the consumer did not finish within shutdown.timeout");
    } else {
        let _ = thread.join();
    }
    // The drained tasks end (with them the last clones of the producers and the population
    // reader, each of which stops its client as it goes).
    spawned.close();
    let left = budget.saturating_sub(started.elapsed());
    if tokio::time::timeout(left, spawned.wait()).await.is_err() {
        tracing::warn!("partition tasks did not end within shutdown.timeout");
    }
    let left = budget.saturating_sub(started.elapsed());
    if let Err(e) = producer.flush(left) {
        tracing::warn!(error = %e, "producer flush did not finish");
    }
    if let Some(p) = &changelog_producer {
        if let Err(e) = p.flush(budget.saturating_sub(started.elapsed())) {
            tracing::warn!(error = %e, "changelog producer flush did not finish");
        }
    }
    tracing::info!(elapsed_ms = started.elapsed().as_millis() as u64, "stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::consumer::BaseConsumer;

    /// docs/contract.md §6: `kafka.client.*` reaches librdkafka, which (built with TLS) accepts
    /// SASL_SSL with SCRAM — creating the clients validates every property.
    #[test]
    fn clients_accept_sasl_ssl_settings_passed_through() {
        let s = crate::config::from_toml_str(
            r#"
            [kafka]
            brokers = "broker-1.example:9093"
            [kafka.client]
            "security.protocol" = "SASL_SSL"
            "sasl.mechanism" = "SCRAM-SHA-512"
            "sasl.username" = "momentd"
            "ssl.endpoint.identification.algorithm" = "https"
            "#,
        )
        .expect("settings");
        let mut with_secret = s.clone();
        with_secret
            .kafka
            .client
            .insert("sasl.password".into(), "from-the-environment".into());
        let p = producer_config(&with_secret);
        assert_eq!(p.get("security.protocol"), Some("SASL_SSL"));
        assert_eq!(p.get("enable.idempotence"), Some("true"));
        let _producer = output::Producer::new(&p).expect("the producer accepts SASL_SSL");
        let c = consumer_config(&with_secret);
        assert_eq!(c.get("sasl.mechanism"), Some("SCRAM-SHA-512"));
        c.create::<BaseConsumer>()
            .expect("the consumer accepts SASL_SSL");
        // A typo is refused by librdkafka, not silently ignored.
        let mut bad = with_secret.clone();
        bad.kafka
            .client
            .insert("security.protocool".into(), "SSL".into());
        assert!(output::Producer::new(&producer_config(&bad)).is_err());
    }

    #[test]
    fn at_least_once_settings_cannot_be_overridden() {
        let mut s = Settings::default();
        s.kafka
            .client
            .insert("enable.auto.commit".into(), "true".into());
        let c = consumer_config(&s);
        assert_eq!(c.get("enable.auto.commit"), Some("false"));
        assert_eq!(c.get("enable.auto.offset.store"), Some("false"));
    }
}
