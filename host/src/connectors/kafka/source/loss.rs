//! What the source does when its topic or its cluster goes away. The
//! cluster check starts a broker of its own (on port 49300) with
//! `scripts/services.sh`, and kills it.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;

use super::broker_tests::{config, produce, unique, PATIENCE};
use super::{KafkaSource, StopAt};
use crate::connectors::kafka::CreateTopic;
use crate::model::SourceReader;

/// Reads until an error; panics if the source ends or `PATIENCE` passes.
fn read_until_error(s: &mut KafkaSource) -> String {
    let deadline = Instant::now() + PATIENCE;
    loop {
        assert!(Instant::now() < deadline, "no error");
        match s.next_batch(&mut Vec::new()) {
            Ok(Some(_)) => {}
            Ok(None) => panic!("the source ended"),
            Err(e) => {
                eprintln!("the source failed: {e}");
                return e;
            }
        }
    }
}

/// Reads until `n` events came.
fn read_n(s: &mut KafkaSource, n: usize) {
    let deadline = Instant::now() + PATIENCE;
    let mut got = 0;
    while got < n {
        assert!(Instant::now() < deadline, "read {got} of {n}");
        got += s.next_batch(&mut Vec::new()).unwrap().unwrap().len();
    }
}

#[test]
#[ignore = "needs the Kafka broker at 127.0.0.1:9092"]
fn a_deleted_topic_is_an_error_naming_it() {
    let topic = unique("deleted");
    let create = CreateTopic {
        partitions: 1,
        replication: 1,
    };
    let mut c = config(&topic);
    c.stop = StopAt::Never;
    c.partition_discovery = Duration::from_millis(100);
    c.cluster.create_topic(&topic, create, &[]).unwrap();
    produce(&topic, &[(0, None, "a".into(), 1)], None);
    let mut s = KafkaSource::open(&c, 0, 1, 100, None).unwrap();
    read_n(&mut s, 1);
    let admin: AdminClient<DefaultClientContext> = c.cluster.client_config().create().unwrap();
    futures_executor::block_on(admin.delete_topics(&[&topic], &AdminOptions::new())).unwrap();
    let e = read_until_error(&mut s);
    assert!(
        e.starts_with(&format!(
            "cannot read Kafka topic `{topic}` at `{}`: ",
            c.cluster.bootstrap
        )),
        "{e}"
    );
    assert!(!e.contains('\n'), "{e}");
}

/// A broker of this test's own, stopped (and its data deleted) on drop.
struct OwnBroker {
    dir: PathBuf,
}

impl OwnBroker {
    fn script() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/services.sh")
    }

    fn run(&self, args: &[&str]) -> String {
        let out = Command::new("bash")
            .arg(Self::script())
            .args(args)
            .env("WEIR_SERVICES", &self.dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "services.sh {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn start(port: u16) -> (OwnBroker, String) {
        let dir = std::env::temp_dir().join(format!("kafka-source-loss-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let jars = dirs_home().join(".weir/services/kafka-4.3.1");
        let link = dir.join("kafka-4.3.1");
        if !link.exists() {
            std::os::unix::fs::symlink(jars, &link).unwrap();
        }
        let broker = OwnBroker { dir };
        let out = broker.run(&["up", "kafka", "--port", &port.to_string()]);
        let bootstrap = out.lines().last().unwrap().trim().to_string();
        (broker, bootstrap)
    }
}

fn dirs_home() -> PathBuf {
    PathBuf::from(std::env::var_os("HOME").unwrap())
}

impl Drop for OwnBroker {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(Self::script())
            .args(["down", "kafka"])
            .env("WEIR_SERVICES", &self.dir)
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
#[ignore = "starts and kills a Kafka broker of its own on port 49300"]
fn survives_a_short_loss_of_the_cluster_and_fails_after_connect_timeout() {
    let (broker, bootstrap) = OwnBroker::start(49300);
    let topic = unique("loss");
    let mut c = config(&topic);
    c.cluster.bootstrap = bootstrap.clone();
    c.stop = StopAt::Never;
    c.create = Some(CreateTopic {
        partitions: 1,
        replication: 1,
    });
    let producer_cluster = c.cluster.clone();
    let send = |v: &str| {
        let producer: rdkafka::producer::BaseProducer =
            producer_cluster.client_config().create().unwrap();
        use rdkafka::producer::Producer;
        producer
            .send(rdkafka::producer::BaseRecord::<(), str>::to(&topic).payload(v))
            .map_err(|(e, _)| e)
            .unwrap();
        producer.flush(PATIENCE).unwrap();
    };
    // A loss shorter than connect_timeout: the source reads on.
    c.cluster.connect_timeout = Duration::from_secs(120);
    let mut s = KafkaSource::open(&c, 0, 1, 100, None).unwrap();
    send("a");
    read_n(&mut s, 1);
    broker.run(&["down", "kafka", "--broker", "1", "--kill"]);
    // Poll while it is down (transient errors are retried).
    for _ in 0..20 {
        assert_eq!(
            s.next_batch(&mut Vec::new()).unwrap().map(|b| b.len()),
            Some(0)
        );
    }
    broker.run(&["up", "kafka", "--port", "49300"]);
    send("b");
    read_n(&mut s, 1);
    // A loss longer than connect_timeout: an error naming the cluster.
    c.cluster.connect_timeout = Duration::from_secs(2);
    let mut s = KafkaSource::open(&c, 0, 1, 100, None).unwrap();
    read_n(&mut s, 2);
    broker.run(&["down", "kafka", "--broker", "1", "--kill"]);
    let e = read_until_error(&mut s);
    assert!(
        e.starts_with(&format!("lost Kafka at `{bootstrap}`: no answer for 2s")),
        "{e}"
    );
    assert!(!e.contains('\n'), "{e}");
}
