//! Configuration (docs/contract.md §1): a TOML file, every key overridable by `MOMENTD__SECTION__KEY`
//! environment variables, unknown keys rejected, every value checked with a message that names
//! the key. Secrets come from the environment only.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::event::Encoding;

mod rules;
use crate::time::{Ts, DAY};
pub use rules::*;

pub const DEFAULT_PATH: &str = "config/momentd.toml";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration file {path}: not found")]
    Missing { path: PathBuf },
    #[error("configuration: {0}")]
    Load(String),
    #[error("configuration key `{key}`: {msg}")]
    Invalid { key: String, msg: String },
    #[error("configuration key `{key}`: secrets are read from the environment only ({env}), not from the file")]
    SecretInFile { key: String, env: String },
}

pub(crate) fn invalid(key: impl Into<String>, msg: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        msg: msg.into(),
    }
}

/// A duration written the human way (`"90s"`, `"72h"`, `"14d"`).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Dur(pub std::time::Duration);

impl Dur {
    pub const fn days(d: u64) -> Dur {
        Dur(std::time::Duration::from_secs(d * 86_400))
    }
    pub const fn hours(h: u64) -> Dur {
        Dur(std::time::Duration::from_secs(h * 3_600))
    }
    pub const fn secs(s: u64) -> Dur {
        Dur(std::time::Duration::from_secs(s))
    }
    pub fn ms(self) -> Ts {
        self.0.as_millis().min(i64::MAX as u128) as Ts
    }
}

impl fmt::Debug for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0.as_secs();
        if self.0.subsec_nanos() != 0 || s == 0 {
            write!(f, "{}", humantime::format_duration(self.0))
        } else if s % 86_400 == 0 && s >= 7 * 86_400 {
            write!(f, "{}d", s / 86_400)
        } else if s % 3_600 == 0 {
            write!(f, "{}h", s / 3_600)
        } else if s % 60 == 0 {
            write!(f, "{}m", s / 60)
        } else {
            write!(f, "{s}s")
        }
    }
}

impl Serialize for Dur {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Dur, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(s.trim()).map(Dur).map_err(|e| {
            serde::de::Error::custom(format!(
                "{s:?} is not a duration like \"14d\" or \"72h\": {e}"
            ))
        })
    }
}

// ---------------------------------------------------------------------------------------------
// The settings tree.

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    pub kafka: Kafka,
    pub input: Input,
    pub output: Output,
    pub time: Time,
    pub actions: Actions,
    pub rules: Rules,
    pub privacy: Privacy,
    pub audit: Audit,
    pub http: Http,
    pub log: Log,
    pub shutdown: Shutdown,
    pub state: State,
    pub calendar: Calendar,
    pub population: Population,
    /// A/B experiments over rules' triggers (docs/contract.md §7); none by default.
    pub experiments: Vec<Experiment>,
}

/// An experiment: for the rules it covers, each subject is assigned an arm — a pure function
/// of (experiment id, subject) — and the control arm's triggers are held out (audited as
/// `held_out`, not published).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Experiment {
    pub id: String,
    /// Rule ids it covers.
    pub rules: Vec<String>,
    /// Share of subjects held out as the control (0 to below 1).
    #[serde(default)]
    pub control_share: f64,
    pub arms: Vec<Arm>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Arm {
    pub name: String,
    /// Relative weight among the arms (the control share is taken first).
    #[serde(default = "one")]
    pub weight: u32,
    /// Replaces the rule's action for subjects in this arm.
    #[serde(default)]
    pub action: Option<ActionCfg>,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Kafka {
    pub brokers: String,
    pub group_id: String,
    pub input_topics: Vec<String>,
    pub output_topic: String,
    pub dlq_topic: String,
    pub create_topics: bool,
    pub topic_partitions: u32,
    pub topic_replication: u32,
    /// How often processed positions are committed (asynchronously).
    pub commit_interval: Dur,
    /// On revoke, how long in-flight work of the revoked partitions may take before their
    /// positions are committed (below the group's session timeout).
    pub drain_timeout: Dur,
    /// How long each start-up step (cluster metadata, creating or checking the topics) may
    /// take before `run` gives up, naming the step.
    pub startup_timeout: Dur,
    /// Each partition's task reads the partition's own librdkafka queue (the default); false:
    /// one consumer thread polls every message and hands it to its partition's task (slower;
    /// an escape hatch should a librdkafka version misbehave with split queues).
    pub split_partition_queues: bool,
    /// librdkafka properties passed through as they are (`security.protocol`, `sasl.mechanism`,
    /// …). In environment variables write `_` for `.`: `MOMENTD__KAFKA__CLIENT__SASL_PASSWORD`.
    pub client: BTreeMap<String, String>,
}

impl Default for Kafka {
    fn default() -> Self {
        Kafka {
            brokers: "localhost:9092".into(),
            group_id: "momentd".into(),
            input_topics: vec!["hr.interactions".into()],
            output_topic: "hr.triggers".into(),
            dlq_topic: "hr.interactions.dlq".into(),
            create_topics: true,
            topic_partitions: 6,
            topic_replication: 1,
            commit_interval: Dur(std::time::Duration::from_secs(1)),
            drain_timeout: Dur(std::time::Duration::from_secs(5)),
            startup_timeout: Dur(std::time::Duration::from_secs(30)),
            split_partition_queues: true,
            client: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Input {
    /// Encoding of messages without a `content-type` header.
    pub default_encoding: Encoding,
    pub max_event_bytes: usize,
}

impl Default for Input {
    fn default() -> Self {
        Input {
            default_encoding: Encoding::Json,
            max_event_bytes: 64 * 1024,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Output {
    pub encoding: Encoding,
}

impl Default for Output {
    fn default() -> Self {
        Output {
            encoding: Encoding::Json,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Time {
    pub allowed_lateness: Dur,
    pub idle_timeout: Dur,
    pub dedup_horizon: Dur,
}

impl Default for Time {
    fn default() -> Self {
        Time {
            allowed_lateness: Dur::hours(1),
            idle_timeout: Dur::secs(300),
            dedup_horizon: Dur::days(7),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Actions {
    pub deliver_within: Dur,
}

impl Default for Actions {
    fn default() -> Self {
        Actions {
            deliver_within: Dur::hours(48),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    MicroLesson,
    SkillRefresher,
    ManagerCoaching,
    MicroMentoringInvite,
    OfficeHoursInvite,
    ContentReview,
}

impl ActionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ActionKind::MicroLesson => "micro_lesson",
            ActionKind::SkillRefresher => "skill_refresher",
            ActionKind::ManagerCoaching => "manager_coaching",
            ActionKind::MicroMentoringInvite => "micro_mentoring_invite",
            ActionKind::OfficeHoursInvite => "office_hours_invite",
            ActionKind::ContentReview => "content_review",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Audience {
    Employee,
    Manager,
    HrOps,
    LAndD,
    HrBusinessPartner,
}

impl Audience {
    pub fn as_str(self) -> &'static str {
        match self {
            Audience::Employee => "employee",
            Audience::Manager => "manager",
            Audience::HrOps => "hr_ops",
            Audience::LAndD => "l_and_d",
            Audience::HrBusinessPartner => "hr_business_partner",
        }
    }
}

/// What a rule asks a delivery service to do. `content_id` may contain `{module_id}`, filled
/// from the event that caused the trigger.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionCfg {
    pub kind: ActionKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_id: Option<String>,
    pub max_minutes: u32,
    pub audience: Audience,
}

/// The longest an employee-facing action may take (docs/contract.md §5).
pub const MAX_EMPLOYEE_MINUTES: u32 = 7;

impl ActionCfg {
    pub(crate) fn new(
        kind: ActionKind,
        content_id: &str,
        max_minutes: u32,
        audience: Audience,
    ) -> ActionCfg {
        ActionCfg {
            kind,
            content_id: Some(content_id.to_string()),
            max_minutes,
            audience,
        }
    }
    pub(crate) fn validate(&self, key: &str) -> Result<(), ConfigError> {
        if self.audience == Audience::Employee && self.max_minutes > MAX_EMPLOYEE_MINUTES {
            return Err(invalid(
                format!("{key}.max_minutes"),
                format!(
                    "{} minutes is over {MAX_EMPLOYEE_MINUTES}, the most an employee-facing action may take",
                    self.max_minutes
                ),
            ));
        }
        if self.max_minutes == 0 {
            return Err(invalid(format!("{key}.max_minutes"), "must be at least 1"));
        }
        Ok(())
    }
}

/// The company's non-working days (docs/contract.md §8): left out of every window, for everyone.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Calendar {
    /// `YYYY-MM-DD` days and `YYYY-MM-DD..YYYY-MM-DD` inclusive ranges.
    pub non_working_days: Vec<String>,
}

impl Calendar {
    /// The days, as day numbers; a malformed entry is an error naming it.
    pub fn days(&self) -> Result<crate::calendar::Days, ConfigError> {
        let mut ranges = Vec::with_capacity(self.non_working_days.len());
        for (i, e) in self.non_working_days.iter().enumerate() {
            let key = format!("calendar.non_working_days[{i}]");
            let bad = |why: &str| invalid(key.clone(), format!("{e:?}: {why}"));
            let date = |s: &str| {
                crate::time::parse_date(s.trim())
                    .ok_or_else(|| bad("not a date (YYYY-MM-DD, or YYYY-MM-DD..YYYY-MM-DD)"))
            };
            let (a, b) = match e.split_once("..") {
                Some((a, b)) => (date(a)?, date(b)?),
                None => {
                    let d = date(e)?;
                    (d, d)
                }
            };
            if b < a {
                return Err(bad("the range ends before it starts"));
            }
            if b - a >= 3660 {
                return Err(bad("a range over ten years"));
            }
            ranges.push((a as i32, b as i32));
        }
        Ok(crate::calendar::Days::from_ranges(ranges))
    }
}

/// Population-aware detection (docs/contract.md §8).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Population {
    /// A UTC day on which fewer employees than this share of the median of the same weekday
    /// over the previous 8 weeks sent a rollup of a source is a gap of that source.
    pub gap_share: f64,
    /// Ratio rules compare the subject's ratio with the population's over the same windows.
    pub relative: bool,
    /// A window of daily totals with fewer than this share of its days left after exclusions
    /// is not judged.
    pub min_window_share: f64,
}

impl Default for Population {
    fn default() -> Self {
        Population {
            gap_share: 0.5,
            relative: true,
            min_window_share: 0.5,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Privacy {
    /// Replace employee ids in every output by HMAC-SHA256(MOMENTD_PSEUDONYM_KEY, id)[..32 hex].
    pub pseudonymize: bool,
    pub min_group_size: u32,
}

impl Default for Privacy {
    fn default() -> Self {
        Privacy {
            pseudonymize: false,
            min_group_size: 5,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Audit {
    pub enabled: bool,
    pub topic: String,
}

impl Default for Audit {
    fn default() -> Self {
        Audit {
            enabled: false,
            topic: "hr.triggers.audit".into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Http {
    pub listen: String,
}

impl Default for Http {
    fn default() -> Self {
        Http {
            listen: "0.0.0.0:9464".into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Log {
    pub format: LogFormat,
    /// A tracing filter (`info`, `momentd=debug`, …).
    pub level: String,
}

impl Default for Log {
    fn default() -> Self {
        Log {
            format: LogFormat::Text,
            level: "info".into(),
        }
    }
}

/// Durable state (docs/contract.md §9).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct State {
    /// Write every task's state to the changelog and restore it on assignment. Off, state
    /// lives only in memory and is rebuilt from nothing after a restart or a rebalance.
    pub changelog: bool,
    /// The compacted changelog topic; empty: `{kafka.group_id}-state-changelog`.
    pub changelog_topic: String,
    /// An employee with no event for this long (event time) is evicted: their state is
    /// dropped and the changelog gets a tombstone. Exit and consent flags are kept (only the
    /// history goes). `0s`: never.
    pub idle_ttl: Dur,
    /// Team and cohort rules across partitions and instances: employee tasks publish their
    /// contributions to the repartition topic, partition by group, and their watermarks to
    /// every partition; group task p reads partition p. Off, each partition's engine judges
    /// the groups of its own employees (as `replay` of that partition alone would).
    pub repartition: bool,
    /// The repartition topic; empty: `{kafka.group_id}-groups-repartition`.
    pub repartition_topic: String,
    /// With `repartition`, the population's figures (docs/contract.md §8) go through this topic (one
    /// partition, compacted): each task publishes its share of each day, every task reads
    /// them all. Empty: `{kafka.group_id}-population`. Without `repartition`, each partition
    /// is its own population.
    pub population_topic: String,
}

impl Default for State {
    fn default() -> Self {
        State {
            changelog: true,
            changelog_topic: String::new(),
            idle_ttl: Dur(std::time::Duration::from_secs(180 * 86_400)),
            repartition: true,
            repartition_topic: String::new(),
            population_topic: String::new(),
        }
    }
}

impl Settings {
    /// `state.changelog_topic`, or its default from the group id.
    pub fn changelog_topic(&self) -> String {
        if self.state.changelog_topic.trim().is_empty() {
            format!("{}-state-changelog", self.kafka.group_id)
        } else {
            self.state.changelog_topic.clone()
        }
    }

    /// `state.repartition_topic`, or its default from the group id.
    pub fn repartition_topic(&self) -> String {
        if self.state.repartition_topic.trim().is_empty() {
            format!("{}-groups-repartition", self.kafka.group_id)
        } else {
            self.state.repartition_topic.clone()
        }
    }

    /// `state.population_topic`, or its default from the group id.
    pub fn population_topic(&self) -> String {
        if self.state.population_topic.trim().is_empty() {
            format!("{}-population", self.kafka.group_id)
        } else {
            self.state.population_topic.clone()
        }
    }

    /// Every topic a task reads partition p of: the input topics, then the repartition topic.
    pub fn task_topics(&self) -> Vec<String> {
        let mut t = self.kafka.input_topics.clone();
        if self.state.repartition {
            t.push(self.repartition_topic());
        }
        t
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Shutdown {
    pub timeout: Dur,
}

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown {
            timeout: Dur::secs(10),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Loading.

/// librdkafka properties that hold secrets: accepted from the environment only.
const SECRET_CLIENT_KEYS: &[&str] = &["sasl.password", "ssl.key.password", "ssl.keystore.password"];

pub const PSEUDONYM_KEY_ENV: &str = "MOMENTD_PSEUDONYM_KEY";

fn normalize_client_keys(s: &mut Settings) {
    s.kafka.client = std::mem::take(&mut s.kafka.client)
        .into_iter()
        .map(|(k, v)| (k.replace('_', "."), v))
        .collect();
}

fn file_source(path: &Path) -> config::File<config::FileSourceFile, config::FileFormat> {
    config::File::from(path).format(config::FileFormat::Toml)
}

fn env_source() -> config::Environment {
    config::Environment::with_prefix("MOMENTD")
        .prefix_separator("__")
        .separator("__")
        .try_parsing(true)
        .list_separator(",")
        .with_list_parse_key("kafka.input_topics")
        .with_list_parse_key("calendar.non_working_days")
}

fn deserialize(c: config::Config) -> Result<Settings, ConfigError> {
    c.try_deserialize::<Settings>()
        .map_err(|e| ConfigError::Load(e.to_string()))
}

/// Loads the configuration: `path` (or `config/momentd.toml` when it exists), then the
/// `MOMENTD__…` environment, then validates.
pub fn load(path: Option<&Path>) -> Result<Settings, ConfigError> {
    let vars: Vec<(String, String)> = std::env::vars().collect();
    load_with_env(path, vars)
}

/// [`load`] with an explicit environment (tests).
pub fn load_with_env(
    path: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Settings, ConfigError> {
    let file = match path {
        Some(p) if !p.exists() => {
            return Err(ConfigError::Missing {
                path: p.to_path_buf(),
            })
        }
        Some(p) => Some(p.to_path_buf()),
        None => {
            let p = PathBuf::from(DEFAULT_PATH);
            p.exists().then_some(p)
        }
    };
    if let Some(p) = &file {
        // The file alone: secrets must not be in it.
        let from_file = deserialize(
            config::Config::builder()
                .add_source(file_source(p))
                .build()
                .map_err(|e| ConfigError::Load(e.to_string()))?,
        )?;
        let mut f = from_file;
        normalize_client_keys(&mut f);
        for k in SECRET_CLIENT_KEYS {
            if f.kafka.client.contains_key(*k) {
                return Err(ConfigError::SecretInFile {
                    key: format!("kafka.client.{k}"),
                    env: format!(
                        "MOMENTD__KAFKA__CLIENT__{}",
                        k.replace('.', "_").to_uppercase()
                    ),
                });
            }
        }
    }
    let env: config::Map<String, String> = env.into_iter().collect();
    let mut b = config::Config::builder();
    if let Some(p) = &file {
        b = b.add_source(file_source(p));
    }
    b = b.add_source(env_source().source(Some(env)));
    let mut s = deserialize(b.build().map_err(|e| ConfigError::Load(e.to_string()))?)?;
    normalize_client_keys(&mut s);
    s.validate()?;
    Ok(s)
}

/// Parses TOML text (tests and `validate-config` of inline text).
pub fn from_toml_str(text: &str) -> Result<Settings, ConfigError> {
    let c = config::Config::builder()
        .add_source(config::File::from_str(text, config::FileFormat::Toml))
        .build()
        .map_err(|e| ConfigError::Load(e.to_string()))?;
    let mut s = deserialize(c)?;
    normalize_client_keys(&mut s);
    s.validate()?;
    Ok(s)
}

pub(crate) fn positive(d: Dur, key: &str) -> Result<(), ConfigError> {
    if d.0.is_zero() {
        Err(invalid(key, "must be longer than zero"))
    } else {
        Ok(())
    }
}

pub(crate) fn whole_days(d: Dur, key: &str) -> Result<(), ConfigError> {
    positive(d, key)?;
    if d.ms() % DAY != 0 {
        Err(invalid(
            key,
            format!("{d} is not a whole number of days (daily figures use UTC days)"),
        ))
    } else {
        Ok(())
    }
}

pub(crate) fn ratio(v: f64, key: &str) -> Result<(), ConfigError> {
    if !(v.is_finite() && v > 0.0 && v <= 1.0) {
        Err(invalid(key, format!("{v} is not a ratio in (0, 1]")))
    } else {
        Ok(())
    }
}

impl Settings {
    /// Every check a value needs beyond its type, with the key at fault.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let k = &self.kafka;
        if k.input_topics.is_empty() || k.input_topics.iter().any(|t| t.trim().is_empty()) {
            return Err(invalid(
                "kafka.input_topics",
                "needs at least one non-empty topic name",
            ));
        }
        let session_ms: u64 = k
            .client
            .get("session.timeout.ms")
            .and_then(|v| v.parse().ok())
            .unwrap_or(45_000);
        if k.drain_timeout.0.as_millis() as u64 >= session_ms {
            return Err(invalid(
                "kafka.drain_timeout",
                format!(
                    "{} is not below the session timeout ({session_ms} ms): a revoke would outlive the member's session",
                    k.drain_timeout
                ),
            ));
        }
        if self.state.repartition && !self.state.changelog {
            return Err(invalid(
                "state.repartition",
                "needs state.changelog: the contributions an input offset sent to the repartition topic are committed with the checkpoint that covers them",
            ));
        }
        if k.input_topics.len() > 1 || self.state.repartition {
            // Partition p of every input topic (and of the repartition topic) feeds one task
            // (docs/contract.md §9): only the range assignor keeps them on one member (with equal
            // partition counts).
            if let Some(strategy) = k.client.get("partition.assignment.strategy") {
                if strategy.split(',').next().map(str::trim) != Some("range") {
                    return Err(invalid(
                        "kafka.client.partition.assignment.strategy",
                        format!("is {strategy:?}, but partition p of every input topic and of the repartition topic must be assigned to one member, which only \"range\" does: use \"range\" (or one input topic and state.repartition = false)"),
                    ));
                }
            }
        }
        if k.commit_interval.0.is_zero() {
            return Err(invalid("kafka.commit_interval", "must be more than 0"));
        }
        for (key, v) in [
            ("kafka.output_topic", &k.output_topic),
            ("kafka.dlq_topic", &k.dlq_topic),
            ("kafka.group_id", &k.group_id),
            ("kafka.brokers", &k.brokers),
        ] {
            if v.trim().is_empty() {
                return Err(invalid(key, "must not be empty"));
            }
        }
        if k.topic_partitions == 0 {
            return Err(invalid("kafka.topic_partitions", "must be at least 1"));
        }
        if self.input.max_event_bytes == 0 {
            return Err(invalid("input.max_event_bytes", "must be at least 1"));
        }
        positive(self.time.idle_timeout, "time.idle_timeout")?;
        positive(self.time.dedup_horizon, "time.dedup_horizon")?;
        positive(self.actions.deliver_within, "actions.deliver_within")?;
        positive(self.shutdown.timeout, "shutdown.timeout")?;
        if self.privacy.min_group_size < 2 {
            return Err(invalid(
                "privacy.min_group_size",
                "must be at least 2: a group of one is a person",
            ));
        }
        if self.audit.enabled && self.audit.topic.trim().is_empty() {
            return Err(invalid(
                "audit.topic",
                "must not be empty when audit.enabled",
            ));
        }
        if self.http.listen.parse::<std::net::SocketAddr>().is_err() {
            return Err(invalid(
                "http.listen",
                format!("{:?} is not an address like 0.0.0.0:9464", self.http.listen),
            ));
        }
        self.rules.validate()?;
        self.calendar.days()?;
        for (key, v) in [
            ("population.gap_share", self.population.gap_share),
            (
                "population.min_window_share",
                self.population.min_window_share,
            ),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return Err(invalid(key, format!("{v} is not between 0 and 1")));
            }
        }
        self.validate_experiments()?;
        Ok(())
    }

    fn validate_experiments(&self) -> Result<(), ConfigError> {
        let mut ids = std::collections::BTreeSet::new();
        for (i, e) in self.experiments.iter().enumerate() {
            let k = format!("experiments[{i}]");
            if e.id.trim().is_empty() || !ids.insert(e.id.clone()) {
                return Err(invalid(format!("{k}.id"), "must be non-empty and unique"));
            }
            if e.rules.is_empty() {
                return Err(invalid(format!("{k}.rules"), "names no rule"));
            }
            for r in &e.rules {
                let Some(id) = crate::catalog::RuleId::ALL.iter().find(|x| x.as_str() == r) else {
                    return Err(invalid(
                        format!("{k}.rules"),
                        format!("{r:?} is not a rule id"),
                    ));
                };
                if self.experiments[..i]
                    .iter()
                    .any(|o| o.rules.iter().any(|x| x == id.as_str()))
                {
                    return Err(invalid(
                        format!("{k}.rules"),
                        format!("{r} is already covered by another experiment"),
                    ));
                }
                for (j, a) in e.arms.iter().enumerate() {
                    if let Some(action) = &a.action {
                        let key = format!("{k}.arms[{j}].action");
                        action.validate(&key)?;
                        if matches!(
                            id,
                            crate::catalog::RuleId::LearningAbandonment
                                | crate::catalog::RuleId::LearningConfusion
                        ) && (action.kind == ActionKind::ManagerCoaching
                            || action.audience == Audience::Manager)
                        {
                            return Err(invalid(key, "a learning rule's first action goes to the employee, never straight to a manager"));
                        }
                    }
                }
            }
            if !(0.0..1.0).contains(&e.control_share) {
                return Err(invalid(
                    format!("{k}.control_share"),
                    format!("{} is not in [0, 1)", e.control_share),
                ));
            }
            if e.arms.is_empty() || e.arms.iter().any(|a| a.weight == 0) {
                return Err(invalid(
                    format!("{k}.arms"),
                    "needs at least one arm, each with a weight of at least 1",
                ));
            }
            let mut names = std::collections::BTreeSet::new();
            for (j, a) in e.arms.iter().enumerate() {
                if a.name.trim().is_empty() || a.name == "control" || !names.insert(&a.name) {
                    return Err(invalid(
                        format!("{k}.arms[{j}].name"),
                        "must be non-empty, unique, and not \"control\"",
                    ));
                }
            }
        }
        Ok(())
    }
}

/// A short, stable hash of a rule's effective configuration (`rule_version`).
pub fn version_of<T: Serialize>(parts: &T) -> String {
    let bytes = serde_json::to_vec(parts).unwrap_or_default();
    let digest = Sha256::digest(&bytes);
    hex::encode(&digest[..6])
}

#[cfg(test)]
mod tests;
