//! A transactional id prefix held by one process at a time ([`PrefixLock`],
//! taken by [`lock_prefix`]), and a transaction that a job's earlier prefix
//! left open ([`abort_left_open`]).

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::Producer;

use super::config::KafkaSinkConfig;
use super::markers::ensure_marker_topic;
use super::producer::{init_error, transactional_producer, Context};

/// How long a member of a prefix's owner group may go silent before Kafka
/// takes it out (and a process that was killed lets go of the prefix).
const OWNER_SESSION: Duration = Duration::from_secs(6);

/// A running job's hold on its transactional id prefix: membership of the
/// consumer group `<prefix>.owner`, subscribed to the one-partition marker
/// topic. Kafka's group protocol gives that partition to one member only,
/// and the cooperative-sticky assignor keeps it with the member that has
/// it: so a second process on the same prefix is refused instead of
/// fencing the first. A process that dies holds it until its session
/// times out (`OWNER_SESSION`); one that exits gives it up at once.
/// Released on drop.
pub struct PrefixLock {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for PrefixLock {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Takes the hold on `config`'s transactional id prefix ([`PrefixLock`]),
/// creating the marker topic if needed. Waits while a process that died
/// may still hold it (its session times out); fails in one line naming
/// the holder when a live process keeps it.
pub fn lock_prefix(config: &KafkaSinkConfig) -> Result<PrefixLock, String> {
    ensure_marker_topic(config)?;
    let cluster = &config.cluster;
    let prefix = &config.transactional_id_prefix;
    let group = format!("{prefix}.owner");
    let topic = config.marker_topic();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    let me = format!("weir-pid-{}@{host}", std::process::id());
    let consumer: BaseConsumer = cluster
        .client_config()
        .set("group.id", &group)
        .set("client.id", &me)
        .set("partition.assignment.strategy", "cooperative-sticky")
        .set("session.timeout.ms", OWNER_SESSION.as_millis().to_string())
        .set("heartbeat.interval.ms", "500")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "latest")
        .set("allow.auto.create.topics", "false")
        .create()
        .map_err(|e| cluster.no_client(&e))?;
    consumer
        .subscribe(&[&topic])
        .map_err(|e| format!("cannot join Kafka group `{group}`: {e}"))?;
    let holds = {
        let topic = topic.clone();
        move |c: &BaseConsumer| {
            c.assignment()
                .map(|a| a.find_partition(&topic, 0).is_some())
                .unwrap_or(false)
        }
    };
    // A dead holder's session runs out, then the group rebalances (twice,
    // cooperatively): well within this.
    let wait = 3 * OWNER_SESSION + Duration::from_secs(5);
    let started = Instant::now();
    let mut announced = false;
    while !holds(&consumer) {
        if started.elapsed() >= wait {
            let holders = consumer
                .fetch_group_list(Some(&group), cluster.connect_timeout)
                .map_err(|e| cluster.unreachable(&e))?
                .groups()
                .iter()
                .flat_map(|g| g.members())
                .filter(|m| m.client_id() != me)
                .map(|m| format!("`{}` at {}", m.client_id(), m.client_host()))
                .collect::<Vec<_>>();
            return Err(if holders.is_empty() {
                format!(
                    "cannot take transactional id prefix `{prefix}` at `{}`: Kafka group `{group}` did not assign it within {}",
                    cluster.bootstrap,
                    humantime::format_duration(wait)
                )
            } else {
                format!(
                    "another weir process runs with transactional id prefix `{prefix}` at `{}` ({}, in Kafka group `{group}`): stop it first, or give this job its own `transactional_id_prefix`",
                    cluster.bootstrap,
                    holders.join(", ")
                )
            });
        }
        if !announced && started.elapsed() >= Duration::from_secs(2) {
            tracing::info!(
                "waiting for transactional id prefix `{prefix}`: Kafka group `{group}` has another member (a process that died lets go within {})",
                humantime::format_duration(OWNER_SESSION)
            );
            announced = true;
        }
        if let Some(Err(e)) = consumer.poll(Duration::from_millis(100)) {
            tracing::debug!("Kafka group `{group}`: {e}");
        }
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stopping = stop.clone();
    let thread = std::thread::Builder::new()
        .name("weir-kafka-owner".to_string())
        .spawn(move || {
            let mut held = true;
            while !stopping.load(std::sync::atomic::Ordering::SeqCst) {
                // Records of the marker topic are not read, only skipped.
                let _ = consumer.poll(Duration::from_millis(200));
                let now = holds(&consumer);
                if held && !now {
                    tracing::warn!(
                        "lost the hold on transactional id prefix `{group}` (the process was out of touch with Kafka for over {}): another process may take it and fence this one",
                        humantime::format_duration(OWNER_SESSION)
                    );
                }
                held = now;
            }
            // Dropping the consumer leaves the group at once.
        })
        .map_err(|e| format!("cannot start a thread: {e}"))?;
    Ok(PrefixLock {
        stop,
        thread: Some(thread),
    })
}

/// Aborts a transaction that an earlier run left open under transactional
/// id prefix `prefix` (the job's prefix was changed since): initialising a
/// producer with its id fences the old one and aborts its transaction, so
/// that `read_committed` consumers are not held up until it times out.
/// Only when no live process holds that prefix ([`lock_prefix`]).
pub fn abort_left_open(config: &KafkaSinkConfig, prefix: &str) -> Result<(), String> {
    let mut old = config.clone();
    old.transactional_id_prefix = prefix.to_string();
    // A process on that prefix would have made its marker topic.
    let _lock = match old.cluster.partitions(&old.marker_topic())? {
        Some(_) => Some(lock_prefix(&old)?),
        None => None,
    };
    let producer = transactional_producer(&old, Context::default(), None)?;
    producer
        .init_transactions(old.cluster.connect_timeout)
        .map_err(|e| init_error(&old, &producer, &e))?;
    tracing::info!(
        "aborted any transaction left open under transactional id `{}` (the job's earlier prefix)",
        old.transactional_id()
    );
    Ok(())
}
