use super::*;

fn err(text: &str) -> String {
    from_toml_str(text)
        .expect_err("should be rejected")
        .to_string()
}

#[test]
fn shipped_file_is_the_built_in_defaults() {
    let shipped = load_with_env(Some(Path::new("config/momentd.toml")), Vec::new()).unwrap();
    let defaults = Settings::default();
    assert_eq!(
        serde_json::to_value(&shipped).unwrap(),
        serde_json::to_value(&defaults).unwrap()
    );
}

/// Every leaf key of the built-in defaults, as `a.b.c` paths.
fn leaf_keys(v: &serde_json::Value, prefix: &str, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) if !m.is_empty() => {
            for (k, v) in m {
                leaf_keys(v, &format!("{prefix}{k}."), out);
            }
        }
        serde_json::Value::Object(_) => {}
        _ => out.push(prefix.trim_end_matches('.').to_string()),
    }
}

#[test]
fn shipped_file_writes_out_every_default() {
    let file = config::Config::builder()
        .add_source(config::File::with_name("config/momentd.toml").format(config::FileFormat::Toml))
        .build()
        .unwrap()
        .try_deserialize::<serde_json::Value>()
        .unwrap();
    let (mut want, mut have) = (Vec::new(), Vec::new());
    leaf_keys(
        &serde_json::to_value(Settings::default()).unwrap(),
        "",
        &mut want,
    );
    leaf_keys(&file, "", &mut have);
    let missing: Vec<_> = want.iter().filter(|k| !have.contains(k)).collect();
    assert!(missing.is_empty(), "config/momentd.toml lacks {missing:?}");
}

#[test]
fn unknown_keys_are_rejected_with_their_name() {
    let e = err("[rules.checkin_lapse]\ngrase = \"72h\"\n");
    assert!(
        e.contains("unknown field `grase`") && e.contains("rules.checkin_lapse"),
        "{e}"
    );
    let e = err("[kafak]\nbrokers = \"x\"\n");
    assert!(e.contains("`kafak`"), "{e}");
}

#[test]
fn bad_values_name_the_key() {
    let e = err("[rules.collaboration_decline]\nratio = 1.5\n");
    assert!(e.contains("rules.collaboration_decline.ratio"), "{e}");
    let e = err("[rules.collaboration_decline]\nrecent_window = \"-14d\"\n");
    assert!(
        e.contains("rules.collaboration_decline.recent_window"),
        "{e}"
    );
    let e = err("[rules.collaboration_decline]\nbaseline_window = \"36h\"\n");
    assert!(e.contains("not a whole number of days"), "{e}");
    let e = err("[rules.learning_abandonment.action]\nkind = \"micro_lesson\"\nmax_minutes = 12\naudience = \"employee\"\n");
    assert!(
        e.contains("rules.learning_abandonment.action.max_minutes") && e.contains("over 7"),
        "{e}"
    );
    // A manager-facing action may be longer.
    assert!(from_toml_str("[rules.checkin_lapse.action]\nkind = \"manager_coaching\"\nmax_minutes = 20\naudience = \"manager\"\n").is_ok());
    let e = err("[privacy]\nmin_group_size = 1\n");
    assert!(e.contains("privacy.min_group_size"), "{e}");
}

#[test]
fn environment_overrides_every_level() {
    let env = vec![
        (
            "MOMENTD__RULES__COLLABORATION_DECLINE__RATIO".to_string(),
            "0.4".to_string(),
        ),
        (
            "MOMENTD__KAFKA__BROKERS".to_string(),
            "b1:9092,b2:9092".to_string(),
        ),
        (
            "MOMENTD__KAFKA__INPUT_TOPICS".to_string(),
            "a,b".to_string(),
        ),
        (
            "MOMENTD__KAFKA__CLIENT__SECURITY_PROTOCOL".to_string(),
            "SASL_SSL".to_string(),
        ),
        (
            "MOMENTD__KAFKA__CLIENT__SASL_PASSWORD".to_string(),
            "secret".to_string(),
        ),
        (
            "MOMENTD__TIME__ALLOWED_LATENESS".to_string(),
            "30m".to_string(),
        ),
        (
            "MOMENTD_PSEUDONYM_KEY".to_string(),
            "not a config key".to_string(),
        ),
    ];
    let s = load_with_env(Some(Path::new("config/momentd.toml")), env).unwrap();
    assert_eq!(s.rules.collaboration_decline.ratio, 0.4);
    assert_eq!(s.kafka.brokers, "b1:9092,b2:9092");
    assert_eq!(s.kafka.input_topics, vec!["a", "b"]);
    assert_eq!(
        s.kafka.client.get("security.protocol").map(String::as_str),
        Some("SASL_SSL")
    );
    assert_eq!(
        s.kafka.client.get("sasl.password").map(String::as_str),
        Some("secret")
    );
    assert_eq!(s.time.allowed_lateness, Dur::secs(1800));
}

#[test]
fn unknown_environment_keys_are_rejected() {
    let env = vec![(
        "MOMENTD__RULES__NO_SUCH_RULE__ENABLED".to_string(),
        "true".to_string(),
    )];
    let e = load_with_env(Some(Path::new("config/momentd.toml")), env)
        .unwrap_err()
        .to_string();
    assert!(e.contains("no_such_rule"), "{e}");
}

#[test]
fn secrets_in_the_file_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("m.toml");
    std::fs::write(&p, "[kafka.client]\n\"sasl.password\" = \"hunter2\"\n").unwrap();
    let e = load_with_env(Some(&p), Vec::new()).unwrap_err().to_string();
    assert!(
        e.contains("kafka.client.sasl.password") && e.contains("environment"),
        "{e}"
    );
}

#[test]
fn rule_version_changes_with_the_rule_numbers_only() {
    let a = crate::rules::RuleSet::compile(&Settings::default());
    let mut s = Settings::default();
    s.rules.checkin_lapse.grace = Dur::hours(48);
    let b = crate::rules::RuleSet::compile(&s);
    use crate::rules::RuleId::*;
    assert_ne!(a.meta(CheckinLapse).version, b.meta(CheckinLapse).version);
    assert_eq!(
        a.meta(CollaborationDecline).version,
        b.meta(CollaborationDecline).version
    );
}

/// Several input topics (or one and the repartition topic) feed one task per partition
/// number, so an assignor that may split partition p of them over members is refused; with
/// one input topic and no repartition topic any strategy is the user's.
#[test]
fn several_inputs_need_the_range_assignor() {
    let two = "[kafka]\ninput_topics = [\"a\", \"b\"]\n";
    assert!(from_toml_str(two).is_ok(), "the default strategy is range");
    let e = err(&format!(
        "{two}[kafka.client]\n\"partition.assignment.strategy\" = \"cooperative-sticky\"\n"
    ));
    assert!(
        e.contains("partition.assignment.strategy") && e.contains("range"),
        "{e}"
    );
    assert!(from_toml_str(&format!(
        "{two}[kafka.client]\n\"partition.assignment.strategy\" = \"range,roundrobin\"\n"
    ))
    .is_ok());
    // One input topic and no repartition topic: one topic per task, any strategy.
    assert!(from_toml_str(
        "[state]\nrepartition = false\n[kafka.client]\n\"partition.assignment.strategy\" = \"cooperative-sticky\"\n"
    )
    .is_ok());
    assert!(
        err("[kafka.client]\n\"partition.assignment.strategy\" = \"cooperative-sticky\"\n")
            .contains("repartition")
    );
}

#[test]
fn a_malformed_calendar_entry_is_an_error_naming_it() {
    let e = err("[calendar]\nnon_working_days = [\"2026-12-24..2026-12-26\", \"2026-13-01\"]\n");
    assert!(
        e.contains("calendar.non_working_days[1]") && e.contains("2026-13-01"),
        "{e}"
    );
    let e = err("[calendar]\nnon_working_days = [\"2026-12-26..2026-12-24\"]\n");
    assert!(e.contains("ends before it starts"), "{e}");
    let e = err("[population]\ngap_share = 1.5\n");
    assert!(e.contains("population.gap_share"), "{e}");
    let ok = from_toml_str(
        "[calendar]\nnon_working_days = [\"2026-12-24..2026-12-26\", \"2027-01-01\"]\n",
    )
    .unwrap();
    assert_eq!(ok.calendar.days().unwrap().count(0, 100_000), 4);
}
