//! Unit tests of the sink's pure parts: its table, the transaction timeout
//! check, and the commit markers' encoding.

use std::time::Duration;

use super::config::{
    check_transaction_timeout, default_transactional_id_prefix, Delivery, KafkaSinkConfig,
    DEFAULT_TRANSACTION_TIMEOUT,
};
use super::markers::Committed;
use crate::connectors::kafka::CreateTopic;
use crate::model::config::{Fields, JobFile};

fn parse(text: &str) -> Result<KafkaSinkConfig, String> {
    let cx = JobFile {
        file: "job.toml".into(),
        text,
        base_dir: std::path::PathBuf::from("/"),
    };
    let mut f: Fields = toml::from_str(text).unwrap();
    let t = cx.section("sink", 0..0);
    KafkaSinkConfig::from_table(&t, &mut f, "my job/1").map_err(|e| e.to_string())
}

#[test]
fn reads_a_full_table() {
    let c = parse(
        r#"
        bootstrap = "127.0.0.1:9092"
        topic = "counts"
        delivery = "at-least-once"
        transactional_id_prefix = "weir-x.y_z"
        transaction_timeout = "2m"
        create = { partitions = 3, replication = 1 }
        connect_timeout = "5s"
        "#,
    )
    .unwrap();
    assert_eq!(c.topic, "counts");
    assert_eq!(c.delivery, Some(Delivery::AtLeastOnce));
    assert_eq!(c.transactional_id_prefix, "weir-x.y_z");
    assert_eq!(c.transactional_id(), "weir-x.y_z-0");
    assert_eq!(c.marker_topic(), "weir-x.y_z.commits");
    assert_eq!(c.transaction_timeout, Duration::from_secs(120));
    assert_eq!(
        c.create,
        Some(CreateTopic {
            partitions: 3,
            replication: 1
        })
    );
    assert_eq!(c.cluster.connect_timeout, Duration::from_secs(5));
}

#[test]
fn defaults() {
    let c = parse("bootstrap = \"b:9092\"\ntopic = \"out:put\"").unwrap();
    assert_eq!(c.delivery, None);
    assert_eq!(c.transactional_id_prefix, "weir-my_job_1-out_put");
    assert_eq!(c.transaction_timeout, DEFAULT_TRANSACTION_TIMEOUT);
    assert_eq!(c.create, None);
    assert_eq!(
        default_transactional_id_prefix("a b", "t.é-1"),
        "weir-a_b-t._-1"
    );
}

#[test]
fn rejects_bad_values() {
    let bad = |text: &str, wanted: &str| {
        let e = parse(text).unwrap_err();
        assert!(e.contains(wanted), "{e:?} lacks {wanted:?}");
        assert!(!e.contains('\n'), "{e:?}");
    };
    bad("bootstrap = \"b:1\"", "missing `topic`");
    bad(
        "bootstrap = \"b:1\"\ntopic = \"\"",
        "`topic` must not be empty",
    );
    bad(
        "bootstrap = \"b:1\"\ntopic = \"t\"\ndelivery = \"twice\"",
        "`delivery` must be one of `exactly-once`, `at-least-once`",
    );
    bad(
        "bootstrap = \"b:1\"\ntopic = \"t\"\ntransactional_id_prefix = \"\"",
        "`transactional_id_prefix` must not be empty",
    );
    bad(
        "bootstrap = \"b:1\"\ntopic = \"t\"\ntransactional_id_prefix = \"a/b\"",
        "found `/`",
    );
    bad(
        "bootstrap = \"b:1\"\ntopic = \"t\"\ntransaction_timeout = \"0s\"",
        "`transaction_timeout` must be above zero",
    );
    bad(
        &format!(
            "bootstrap = \"b:1\"\ntopic = \"t\"\ntransactional_id_prefix = \"{}\"",
            "a".repeat(250)
        ),
        "too long",
    );
    bad("topic = \"t\"", "missing `bootstrap`");
}

#[test]
fn transaction_timeout_must_exceed_interval_plus_checkpoint_timeout() {
    let s = Duration::from_secs;
    assert!(check_transaction_timeout(s(900), s(10), s(600), s(60)).is_ok());
    // The restart delay does not constrain it (see the doc).
    assert!(check_transaction_timeout(s(60), s(10), s(30), s(3600)).is_ok());
    let e = check_transaction_timeout(s(60), s(30), s(30), s(1)).unwrap_err();
    assert!(
        e.starts_with("[sink] transaction_timeout 1m must exceed"),
        "{e}"
    );
    assert!(e.contains("30s + 30s = 1m"), "{e}");
    assert!(!e.contains('\n'));
}

#[test]
fn markers_round_trip() {
    let m = Committed {
        checkpoint: 7,
        store: "a\"b".into(),
    };
    assert_eq!(m.encode(), br#"{"checkpoint":7,"store":"a\"b"}"#);
    assert_eq!(Committed::decode(&m.encode()).unwrap(), m);
    assert!(Committed::decode(b"nope").is_err());
}
