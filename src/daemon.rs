//! Starting the daemon: logging, metrics, HTTP, signals, then [`crate::runtime::run`]. `dev` does
//! the same against an in-process librdkafka mock cluster fed with the bundled sample.

use std::io::BufRead;
use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use tokio_util::sync::CancellationToken;

use crate::config::{LogFormat, Settings};
use crate::engine::Pseudonymizer;
use crate::runtime::{self, Health};

/// Logs to stderr, as text or JSON; `RUST_LOG` overrides `log.level`. Text is coloured only
/// when stderr is a terminal (a log file or a pipe gets no escape codes).
pub fn init_logging(s: &Settings) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&s.log.level));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let _ = match s.log.format {
        LogFormat::Json => b.json().try_init(),
        LogFormat::Text => b.try_init(),
    };
}

/// The first SIGTERM or SIGINT cancels `token` (graceful stop); a second exits at once.
pub fn on_signals(token: CancellationToken) {
    tokio::spawn(async move {
        #[cfg(unix)]
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(error = %e, "cannot listen for SIGTERM");
                    return;
                }
            };
        for n in 0.. {
            #[cfg(unix)]
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            #[cfg(not(unix))]
            let _ = tokio::signal::ctrl_c().await;
            if n == 0 {
                tracing::info!("signal received: stopping (a second signal exits at once)");
                token.cancel();
            } else {
                tracing::warn!("second signal: exiting now");
                std::process::exit(130);
            }
        }
    });
}

/// `momentd run`: metrics and HTTP up first (liveness answers while the group forms), then the
/// consumer until a signal.
pub async fn serve(
    settings: Settings,
    pseudonymizer: Option<Pseudonymizer>,
    token: CancellationToken,
) -> anyhow::Result<()> {
    let handle = crate::metrics::install()?;
    let health = Health::default();
    let listener = crate::http::bind(&settings.http.listen).await?;
    tracing::info!(
        listen = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(),
        "serving /metrics /healthz /readyz"
    );
    tokio::spawn(crate::http::serve(
        listener,
        handle.clone(),
        health.clone(),
        token.clone(),
    ));
    tokio::spawn(crate::metrics::upkeep(handle));
    runtime::run(settings, pseudonymizer, health, token).await
}

/// `momentd dev`: an in-process mock cluster, the topics, the sample events produced into it,
/// the daemon's own consumer/producer path, and every trigger printed as it is published.
pub async fn dev(
    mut settings: Settings,
    input: &Path,
    pseudonymizer: Option<Pseudonymizer>,
    token: CancellationToken,
) -> anyhow::Result<()> {
    let cluster = rdkafka::mocking::MockCluster::new(1).context("starting the mock cluster")?;
    settings.kafka.brokers = cluster.bootstrap_servers();
    settings.kafka.create_topics = true;
    // The sample is produced in event-time order, so no lateness is needed; without it the
    // last hour of timers would wait for an hour of idle wall clock.
    settings.time.allowed_lateness = crate::config::Dur(Duration::ZERO);
    // A handful of employees is one partition's worth. (With several, each partition's
    // watermark moves only with its own events, so a sparse partition's last timers would wait
    // for the idle clock — as they would in production.)
    settings.kafka.topic_partitions = 1;
    eprintln!(
        "momentd dev: mock cluster at {} (in this process); topics {:?} -> {}",
        settings.kafka.brokers, settings.kafka.input_topics, settings.kafka.output_topic
    );
    // The mock cluster does not answer the admin API's CreateTopics: create them on it
    // directly (the daemon then finds them, as it would on a managed cluster).
    for (topic, _) in runtime::topics(&settings) {
        cluster
            .create_topic(&topic, settings.kafka.topic_partitions as i32, 1)
            .with_context(|| format!("creating topic {topic} on the mock cluster"))?;
    }
    let produced = produce_file(&settings, input).await?;
    eprintln!(
        "momentd dev: produced {produced} lines of {} to {}; triggers follow (Ctrl-C stops)",
        input.display(),
        settings.kafka.input_topics[0]
    );
    let printer = tokio::spawn(print_triggers(settings.clone(), token.clone()));
    let r = serve(settings, pseudonymizer, token.clone()).await;
    // Every client stops before the cluster it talks to (else each logs the cluster's going):
    // the printer (told to, should `serve` have failed without a signal), then the daemon's
    // own clients' threads (each within its poll interval).
    token.cancel();
    let _ = printer.await;
    let _ =
        tokio::task::spawn_blocking(|| runtime::clients::wait_all_ended(Duration::from_secs(5)))
            .await;
    drop(cluster);
    r
}

/// Produces a JSON Lines file to the first input topic, each line keyed by its `employee_id`
/// (lines that are not JSON objects go unkeyed: the daemon dead-letters them).
pub async fn produce_file(settings: &Settings, input: &Path) -> anyhow::Result<usize> {
    let producer: FutureProducer = runtime::client_config(settings)
        .create()
        .context("creating the sample producer")?;
    let topic = &settings.kafka.input_topics[0];
    let file =
        std::fs::File::open(input).with_context(|| format!("opening {}", input.display()))?;
    let mut n = 0;
    let mut acks = Vec::new();
    for line in std::io::BufReader::new(file).lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let key = serde_json::from_str::<serde_json::Value>(&line)
            .ok()
            .and_then(|v| {
                v.get("employee_id")
                    .and_then(|k| k.as_str())
                    .map(str::to_string)
            });
        let mut rec = FutureRecord::to(topic).payload(line.as_bytes());
        if let Some(k) = &key {
            rec = rec.key(k.as_bytes());
        }
        let f = producer
            .send_result(rec)
            .map_err(|(e, _)| anyhow::anyhow!("producing line {}: {e}", n + 1))?;
        acks.push(f);
        n += 1;
    }
    for f in acks {
        f.await
            .map_err(|_| anyhow::anyhow!("delivery canceled"))?
            .map_err(|(e, _)| anyhow::anyhow!("delivery failed: {e}"))?;
    }
    producer.flush(Duration::from_secs(10))?;
    Ok(n)
}

/// Prints each published trigger, one line each, from the output topic itself.
async fn print_triggers(settings: Settings, token: CancellationToken) {
    let consumer: StreamConsumer = match runtime::client_config(&settings)
        .set("group.id", "momentd-dev-printer")
        .set("auto.offset.reset", "earliest")
        .create()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot read the trigger topic");
            return;
        }
    };
    if let Err(e) = consumer.subscribe(&[&settings.kafka.output_topic]) {
        tracing::error!(error = %e, "cannot subscribe to the trigger topic");
        return;
    }
    loop {
        let m = tokio::select! {
            _ = token.cancelled() => return,
            m = consumer.recv() => m,
        };
        let Ok(m) = m else { continue };
        let Some(p) = m.payload() else { continue };
        match serde_json::from_slice::<serde_json::Value>(p) {
            Ok(t) => println!(
                "{} {:<28} {:<10} {:<7} esc={} {} -> {}",
                t["detected_at"].as_str().unwrap_or(""),
                t["rule"].as_str().unwrap_or(""),
                t["subject"].as_str().unwrap_or(""),
                t["severity"].as_str().unwrap_or(""),
                t["escalation"],
                t["action"]["kind"].as_str().unwrap_or(""),
                t["action"]["audience"].as_str().unwrap_or(""),
            ),
            Err(_) => println!("(a protobuf trigger of {} bytes)", p.len()),
        }
    }
}

#[cfg(feature = "simulator")]
/// Produces simulation records to the first input topic at `rate` records per second until
/// they run out or `duration` passes, with a progress line on stderr; returns how many were
/// acknowledged.
pub async fn produce_records(
    settings: &Settings,
    records: &[crate::sim::Record],
    rate: u64,
    duration: Duration,
) -> anyhow::Result<usize> {
    let producer: FutureProducer = runtime::client_config(settings)
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .context("creating the producer")?;
    let topic = &settings.kafka.input_topics[0];
    let start = std::time::Instant::now();
    let tick = Duration::from_millis(10);
    let per_tick = (rate as f64 * tick.as_secs_f64()).max(1.0);
    let mut acks = futures::stream::FuturesUnordered::new();
    let mut sent = 0usize;
    let mut acked = 0usize;
    let mut last_report = start;
    use futures::StreamExt;
    for r in records {
        if start.elapsed() >= duration {
            break;
        }
        // Pace: record i is due at i / rate seconds.
        let due = start + tick.mul_f64(sent as f64 / per_tick);
        if let Some(wait) = due.checked_duration_since(std::time::Instant::now()) {
            tokio::time::sleep(wait).await;
        }
        let (key, value) = crate::sim::key_and_value(r);
        let mut rec = FutureRecord::to(topic).payload(value.as_bytes());
        if let Some(k) = &key {
            rec = rec.key(k.as_bytes());
        }
        loop {
            match producer.send_result(rec) {
                Ok(f) => {
                    acks.push(f);
                    break;
                }
                Err((_, back)) => {
                    rec = back;
                    if let Some(Ok(Ok(_))) = acks.next().await {
                        acked += 1;
                    }
                }
            }
        }
        sent += 1;
        while let Some(Some(r)) = futures::FutureExt::now_or_never(acks.next()) {
            if matches!(r, Ok(Ok(_))) {
                acked += 1;
            }
        }
        if last_report.elapsed() >= Duration::from_secs(1) {
            let secs = start.elapsed().as_secs_f64();
            eprint!(
                "\rsimulate: {sent}/{} records, {:.0}/s, {:.0}s of {}s   ",
                records.len(),
                sent as f64 / secs,
                secs,
                duration.as_secs()
            );
            last_report = std::time::Instant::now();
        }
    }
    while let Some(r) = acks.next().await {
        if matches!(r, Ok(Ok(_))) {
            acked += 1;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    eprintln!(
        "\rsimulate: {acked} records acknowledged in {secs:.1} s = {:.0} records/s (target {rate}/s)",
        acked as f64 / secs
    );
    Ok(acked)
}
