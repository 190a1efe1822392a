//! The `momentd` command line: parse arguments, load configuration, hand over to the library.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use momentd::config;
use momentd::replay::{replay, ReplayOptions};
use momentd::Engine;

/// mimalloc instead of glibc malloc: the consumer thread allocates each message's copy and a
/// partition task frees it, and glibc's arena locks made those threads wait on each other
/// (measured: most of the daemon's context switches were `__lll_lock_wait_private`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_decommits` in mimalloc v3's `mimalloc.h` (the `libmimalloc-sys` bindings
/// name no constant for it).
const MI_OPTION_PURGE_DECOMMITS: libmimalloc_sys::mi_option_t = 5;

/// How the daemon's allocator treats memory, unless the environment says otherwise (mimalloc's
/// own `MIMALLOC_*` variables):
///
/// * No transparent huge pages for this process. mimalloc asks for them, and each fresh page it
///   then touches costs the kernel a 2 MiB clear: in perf `clear_page_erms` took 13–19 % of the
///   daemon's CPU while it consumed a backlog, and turning them off cut its CPU per event by
///   about a fifth (`MIMALLOC_ALLOW_THP=1` keeps them).
/// * Freed memory goes back to the OS with `MADV_FREE` (reclaimed only under memory pressure)
///   instead of being decommitted, so reusing it does not fault again
///   (`MIMALLOC_PURGE_DECOMMITS=1` decommits).
fn tune_allocator() {
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_none() {
        // SAFETY: prctl with this option only sets a flag of the calling process (it fails
        // harmlessly on kernels without it).
        #[cfg(target_os = "linux")]
        unsafe {
            libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
        }
    }
    if std::env::var_os("MIMALLOC_PURGE_DECOMMITS").is_none() {
        // SAFETY: sets an option value; mimalloc reads it when it next purges.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DECOMMITS, 0) };
    }
}

#[derive(Parser)]
#[command(
    name = "momentd",
    version,
    about = "Detects HR and L&D micro-moments in interaction events and publishes intervention triggers"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the engine over a JSON Lines file of events; triggers as JSON Lines. No broker needed.
    Replay {
        /// Input file, or `-` for standard input.
        #[arg(long)]
        input: String,
        /// Output file, or `-` for standard output.
        #[arg(long, default_value = "-")]
        output: String,
        /// Configuration file (default: config/momentd.toml when it exists).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Advance the clock to this RFC 3339 time at the end of the input (default: the last
        /// event's time), so due timers fire.
        #[arg(long)]
        until: Option<String>,
        /// The wall clock to judge events against (RFC 3339; default: now): an event more than
        /// a day ahead of it is rejected (`timestamp_out_of_range`), as `run` does, so one bad
        /// timestamp cannot move the clock on and fire every timer. Pin it to replay an export
        /// the same way whenever.
        #[arg(long)]
        now: Option<String>,
        /// Exit non-zero when any line was rejected.
        #[arg(long)]
        strict: bool,
        /// Also write audit records (fired / suppressed) as JSON Lines to this file.
        #[arg(long)]
        audit: Option<PathBuf>,
    },
    /// The daemon: consume from Kafka, detect, produce triggers, serve /metrics, /healthz and
    /// /readyz, until SIGTERM or SIGINT.
    Run {
        /// Configuration file (default: config/momentd.toml when it exists).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Try it: the daemon's own Kafka path on an in-process mock cluster, fed with the sample
    /// events; prints each trigger as it is published and serves /metrics, until Ctrl-C.
    Dev {
        /// Configuration file (default: config/momentd.toml when it exists).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Events to produce into the mock cluster (JSON Lines).
        #[arg(long, default_value = "examples/sample-events.jsonl")]
        input: PathBuf,
    },
    /// A seeded synthetic workforce with injected patterns: events and ground truth to a
    /// directory, or produced straight to Kafka at a rate.
    #[cfg(feature = "simulator")]
    Simulate {
        #[arg(long, default_value_t = 2000)]
        employees: u32,
        #[arg(long, default_value_t = 180)]
        days: u32,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Directory for events.jsonl (or events.pb) and truth.json.
        #[arg(long)]
        out: Option<PathBuf>,
        /// `json` (JSON Lines) or `protobuf` (length-delimited momentd.v1.InteractionEvent).
        #[arg(long, default_value = "json")]
        format: String,
        /// Share of ordinary teams with one patterned employee.
        #[arg(long, default_value_t = 0.6)]
        pattern_share: f64,
        #[arg(long, default_value_t = 0.001)]
        malformed_share: f64,
        #[arg(long, default_value_t = 0.01)]
        duplicate_share: f64,
        /// Produce to these brokers instead (keyed by employee id), to the first input topic of
        /// the configuration.
        #[arg(long)]
        kafka: Option<String>,
        /// Target events per second when producing.
        #[arg(long, default_value_t = 10_000)]
        rate: u64,
        /// Stop producing after this many seconds.
        #[arg(long, default_value_t = 60)]
        duration: u64,
        #[arg(long)]
        config: Option<PathBuf>,
        /// A company holiday, FIRST_DAY:DAYS (days from the start): everyone at
        /// --holiday-activity of their activity.
        #[arg(long, value_parser = parse_span)]
        holiday: Option<(i64, i64)>,
        #[arg(long, default_value_t = 0.15)]
        holiday_activity: f64,
        /// Also write the holiday as a calendar, a configuration file for `replay --config`.
        #[arg(long)]
        declare_holiday: Option<PathBuf>,
        /// A feed outage, SOURCE:FIRST_DAY:DAYS (SOURCE: collab.activity or work.tasks); may
        /// be repeated.
        #[arg(long, value_parser = parse_outage)]
        outage: Vec<(momentd::rules::presence::Source, i64, i64)>,
        /// Share of ordinary employees who take recorded time off of 1–3 weeks.
        #[arg(long, default_value_t = 0.0)]
        time_off: f64,
    },
    /// Per rule recall, precision and detection delay of triggers against a simulation's truth.
    #[cfg(feature = "simulator")]
    Evaluate {
        #[arg(long)]
        truth: PathBuf,
        /// Triggers as JSON Lines (what `replay` writes, or what was read from the topic).
        #[arg(long)]
        triggers: PathBuf,
        /// Print `{"rules": [...]}` instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Load and check the configuration, print the effective rules.
    ValidateConfig {
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

fn open_input(path: &str) -> Result<Box<dyn io::BufRead>> {
    Ok(if path == "-" {
        Box::new(BufReader::new(io::stdin()))
    } else {
        Box::new(BufReader::with_capacity(
            1 << 20,
            File::open(path).with_context(|| format!("opening --input {path}"))?,
        ))
    })
}

fn open_output(path: &str) -> Result<Box<dyn Write>> {
    Ok(if path == "-" {
        Box::new(BufWriter::new(io::stdout()))
    } else {
        Box::new(BufWriter::new(
            File::create(path).with_context(|| format!("creating --output {path}"))?,
        ))
    })
}

fn main() -> ExitCode {
    tune_allocator();
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("momentd: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Runs `f` on a multi-threaded tokio runtime with signal handling; exit 0 after a graceful
/// stop.
fn tokio_main<F, Fut>(f: F) -> Result<ExitCode>
where
    F: FnOnce(tokio_util::sync::CancellationToken) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let r = rt.block_on(async {
        let token = tokio_util::sync::CancellationToken::new();
        momentd::daemon::on_signals(token.clone());
        f(token).await
    });
    // Tasks still parked on the broker (a start-up step's blocking call among them) must not
    // hold the exit, whether it stopped or failed.
    rt.shutdown_timeout(std::time::Duration::from_millis(200));
    r?;
    Ok(ExitCode::SUCCESS)
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Replay {
            input,
            output,
            config,
            until,
            now,
            strict,
            audit,
        } => {
            let mut settings = config::load(config.as_deref())?;
            let time_arg = |name: &str, v: Option<String>| -> Result<Option<i64>> {
                v.map(|u| {
                    momentd::time::parse_rfc3339(&u).with_context(|| {
                        format!("--{name} {u:?} is not an RFC 3339 timestamp with offset")
                    })
                })
                .transpose()
            };
            let until = time_arg("until", until)?;
            let now = time_arg("now", now)?.unwrap_or_else(momentd::runtime::now_ms);
            let mut audit_file = match &audit {
                Some(p) => {
                    settings.audit.enabled = true;
                    Some(BufWriter::new(File::create(p).with_context(|| {
                        format!("creating --audit {}", p.display())
                    })?))
                }
                None => None,
            };
            let pseudo = momentd::pseudonymizer_from_env(&settings)?;
            let mut engine = Engine::from_settings(&settings, pseudo);
            let limits = momentd::limits_from(&settings, Some(now));
            let mut inp = open_input(&input)?;
            let mut out = open_output(&output)?;
            let stderr = io::stderr();
            let mut diag = stderr.lock();
            let stats = replay(
                &mut engine,
                &limits,
                &mut inp,
                &mut out,
                audit_file.as_mut().map(|w| w as &mut dyn Write),
                &mut diag,
                &ReplayOptions { until },
            )?;
            if let Some(mut w) = audit_file {
                w.flush()?;
            }
            writeln!(diag, "{}", stats.summary())?;
            if strict && stats.rejected_total() > 0 {
                return Ok(ExitCode::from(1));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Run { config } => {
            let settings = config::load(config.as_deref())?;
            let pseudo = momentd::pseudonymizer_from_env(&settings)?;
            momentd::daemon::init_logging(&settings);
            tokio_main(|token| momentd::daemon::serve(settings, pseudo, token))
        }
        Command::Dev { config, input } => {
            let settings = config::load(config.as_deref())?;
            let pseudo = momentd::pseudonymizer_from_env(&settings)?;
            momentd::daemon::init_logging(&settings);
            tokio_main(|token| async move {
                momentd::daemon::dev(settings, &input, pseudo, token).await
            })
        }
        #[cfg(feature = "simulator")]
        Command::Simulate {
            employees,
            days,
            seed,
            out,
            format,
            pattern_share,
            malformed_share,
            duplicate_share,
            kafka,
            rate,
            duration,
            config,
            holiday,
            holiday_activity,
            declare_holiday,
            outage,
            time_off,
        } => {
            let opts = momentd::sim::SimOptions {
                employees,
                days,
                seed,
                pattern_share,
                malformed_share,
                duplicate_share,
                holiday,
                holiday_activity,
                declare_holiday: declare_holiday.is_some(),
                outages: outage,
                time_off_share: time_off,
            };
            for (flag, v) in [
                ("--time-off", time_off),
                ("--holiday-activity", holiday_activity),
            ] {
                anyhow::ensure!(
                    (0.0..=1.0).contains(&v),
                    "{flag} {v}: a share between 0 and 1"
                );
            }
            if let Some(path) = &declare_holiday {
                let (first, len) = holiday.context("--declare-holiday needs --holiday")?;
                std::fs::write(path, momentd::sim::holiday_calendar(first, len))
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            let sim = momentd::sim::simulate(&opts);
            if let Some(dir) = &out {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
                let truth = dir.join("truth.json");
                std::fs::write(&truth, serde_json::to_string_pretty(&sim.truth)? + "\n")
                    .with_context(|| format!("writing {}", truth.display()))?;
            }
            if let Some(brokers) = kafka {
                let mut settings = config::load(config.as_deref())?;
                settings.kafka.brokers = brokers;
                let rt = tokio::runtime::Runtime::new()?;
                let sent = rt.block_on(momentd::daemon::produce_records(
                    &settings,
                    &sim.records,
                    rate,
                    std::time::Duration::from_secs(duration),
                ))?;
                eprintln!("simulate: produced {sent} of {} records", sim.records.len());
                return Ok(ExitCode::SUCCESS);
            }
            let dir = out.context("--out DIR (or --kafka BROKERS) is needed")?;
            let (name, bytes) = match format.as_str() {
                "json" => ("events.jsonl", momentd::sim::to_json_lines(&sim.records)),
                "protobuf" => ("events.pb", momentd::sim::to_protobuf(&sim.records)),
                f => anyhow::bail!("--format {f:?}: json or protobuf"),
            };
            let path = dir.join(name);
            std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
            let expected = sim.truth.expectations.iter().filter(|e| e.fire).count();
            eprintln!(
                "simulate: {} records ({} employees, {} days, seed {}) -> {}; {} expected detections, {} must-not windows -> {}",
                sim.records.len(),
                employees,
                days,
                seed,
                path.display(),
                expected,
                sim.truth.expectations.len() - expected,
                dir.join("truth.json").display()
            );
            Ok(ExitCode::SUCCESS)
        }
        #[cfg(feature = "simulator")]
        Command::Evaluate {
            truth,
            triggers,
            json,
        } => {
            let t: momentd::sim::Truth = serde_json::from_str(
                &std::fs::read_to_string(&truth)
                    .with_context(|| format!("reading {}", truth.display()))?,
            )
            .with_context(|| format!("{} is not a truth file", truth.display()))?;
            let text = std::fs::read_to_string(&triggers)
                .with_context(|| format!("reading {}", triggers.display()))?;
            let mut ts = Vec::new();
            for (i, line) in text.lines().enumerate() {
                if line.trim().is_empty() {
                    continue;
                }
                ts.push(
                    serde_json::from_str::<serde_json::Value>(line).with_context(|| {
                        format!("{} line {}: not a JSON trigger", triggers.display(), i + 1)
                    })?,
                );
            }
            let scores = momentd::sim::evaluate(&t, &ts);
            if json {
                println!("{}", serde_json::json!({ "rules": scores }));
            } else {
                print!("{}", momentd::sim::table(&scores));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::ValidateConfig { config } => {
            let settings = config::load(config.as_deref())?;
            momentd::pseudonymizer_from_env(&settings)?;
            let path = config
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| format!("{} (or built-in defaults)", config::DEFAULT_PATH));
            println!("configuration {path}: ok");
            println!();
            print!("{}", momentd::rules::RuleSet::describe_settings(&settings));
            Ok(ExitCode::SUCCESS)
        }
    }
}

#[cfg(feature = "simulator")]
/// `FIRST_DAY:DAYS`.
fn parse_span(v: &str) -> Result<(i64, i64), String> {
    let (a, b) = v
        .split_once(':')
        .ok_or_else(|| format!("{v:?}: FIRST_DAY:DAYS"))?;
    let n = |x: &str| x.trim().parse::<i64>().map_err(|e| format!("{v:?}: {e}"));
    let (a, b) = (n(a)?, n(b)?);
    if !(0..=100_000).contains(&a) || !(1..=100_000).contains(&b) {
        return Err(format!("{v:?}: FIRST_DAY 0-100000 and DAYS 1-100000"));
    }
    Ok((a, b))
}

#[cfg(feature = "simulator")]
/// `SOURCE:FIRST_DAY:DAYS`.
fn parse_outage(v: &str) -> Result<(momentd::rules::presence::Source, i64, i64), String> {
    use momentd::rules::presence::Source;
    let (src, span) = v
        .split_once(':')
        .ok_or_else(|| format!("{v:?}: SOURCE:FIRST_DAY:DAYS"))?;
    let source = Source::ALL
        .into_iter()
        .find(|s| s.as_str() == src)
        .ok_or_else(|| format!("{src:?}: collab.activity or work.tasks"))?;
    let (a, b) = parse_span(span)?;
    Ok((source, a, b))
}

#[cfg(test)]
mod tests {
    /// The option index is mimalloc's: its neighbour `purge_delay` (index 15 in the same
    /// enum) has its documented default, and index 5 has `purge_decommits`' default until set.
    #[test]
    fn purge_decommits_is_the_option_set() {
        if std::env::var_os("MIMALLOC_PURGE_DECOMMITS").is_some()
            || std::env::var_os("MIMALLOC_PURGE_DELAY").is_some()
        {
            return;
        }
        // SAFETY: reads option values.
        unsafe {
            assert_eq!(libmimalloc_sys::mi_option_get(15), 1000);
            assert_eq!(
                libmimalloc_sys::mi_option_get(super::MI_OPTION_PURGE_DECOMMITS),
                1
            );
        }
        super::tune_allocator();
        // SAFETY: as above; prctl reads a flag of this process.
        unsafe {
            assert_eq!(
                libmimalloc_sys::mi_option_get(super::MI_OPTION_PURGE_DECOMMITS),
                0
            );
            if std::env::var_os("MIMALLOC_ALLOW_THP").is_none() {
                assert_eq!(libc::prctl(libc::PR_GET_THP_DISABLE, 0, 0, 0, 0), 1);
            }
        }
    }
}
