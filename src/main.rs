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
    rt.block_on(async {
        let token = tokio_util::sync::CancellationToken::new();
        momentd::daemon::on_signals(token.clone());
        f(token).await
    })?;
    // Tasks still parked on the broker must not hold the exit.
    rt.shutdown_timeout(std::time::Duration::from_millis(200));
    Ok(ExitCode::SUCCESS)
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Replay {
            input,
            output,
            config,
            until,
            strict,
            audit,
        } => {
            let mut settings = config::load(config.as_deref())?;
            let until = match until {
                None => None,
                Some(u) => Some(momentd::time::parse_rfc3339(&u).with_context(|| {
                    format!("--until {u:?} is not an RFC 3339 timestamp with offset")
                })?),
            };
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
            let limits = momentd::limits_from(&settings, None);
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
        Command::ValidateConfig { config } => {
            let settings = config::load(config.as_deref())?;
            momentd::pseudonymizer_from_env(&settings)?;
            let path = config
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| format!("{} (or built-in defaults)", config::DEFAULT_PATH));
            println!("configuration {path}: ok");
            println!();
            print!("{}", settings.describe_rules());
            Ok(ExitCode::SUCCESS)
        }
    }
}
