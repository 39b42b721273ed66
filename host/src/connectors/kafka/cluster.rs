//! What the Kafka source and sink both use: the client settings a job file
//! gives ([`KafkaCluster`], `create`), reaching the cluster with a bounded
//! wait, and finding (or creating, when the job says so) a topic.
//!
//! Topics are looked up with a consumer's metadata request, which never
//! creates a topic, whatever the broker's `auto.create.topics.enable`: a
//! topic that does not exist is an error naming it, unless the job asks for
//! it with `create = { partitions = N, replication = R }`.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::metadata::Metadata;
use rdkafka::types::RDKafkaErrorCode;

use crate::model::config::{Fields, JobError, Table};

/// How long a job waits for the cluster at start before it gives up
/// (`connect_timeout`, default 30 s).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// The settings every Kafka table has: where the cluster is, extra
/// librdkafka properties, and how long to wait for it at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaCluster {
    /// `bootstrap`: `host:port[,host:port...]`.
    pub bootstrap: String,
    /// `properties`: librdkafka settings passed through as they are
    /// (`{ "security.protocol" = "ssl", ... }`); the connector's own
    /// settings win over them.
    pub properties: BTreeMap<String, String>,
    /// `connect_timeout`: how long to wait for the cluster at start.
    pub connect_timeout: Duration,
}

/// `create = { partitions = N, replication = R }`: create the topic when it
/// does not exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CreateTopic {
    /// Number of partitions (at least 1).
    pub partitions: i32,
    /// Replication factor (at least 1; `-1`: the broker's default).
    pub replication: i32,
}

impl KafkaCluster {
    /// The fields of a table that every Kafka connector reads.
    pub const FIELDS: &'static [&'static str] = &["bootstrap", "properties", "connect_timeout"];

    /// Reads `bootstrap`, `properties` and `connect_timeout` of a `[source]`
    /// or `[sink]` table; `what` is `source` or `sink`, for messages.
    pub fn from_table(t: &Table<'_, '_>, f: &mut Fields, what: &str) -> Result<Self, JobError> {
        let bootstrap_field = f.take("bootstrap");
        let bootstrap_v = t.required(
            "bootstrap",
            &bootstrap_field,
            &format!(" (the Kafka cluster's `host:port`, required for a `kafka` {what})"),
        )?;
        let bootstrap = t.string("bootstrap", bootstrap_v)?.trim().to_string();
        if bootstrap.is_empty() {
            return Err(t.fail(bootstrap_v.span(), "`bootstrap` must not be empty"));
        }
        let properties = t
            .opt(&f.take("properties"), |v| t.string_map("properties", v))?
            .unwrap_or_default();
        let connect_timeout = t
            .opt(&f.take("connect_timeout"), |v| {
                t.duration("connect_timeout", v)
            })?
            .unwrap_or(DEFAULT_CONNECT_TIMEOUT);
        Ok(KafkaCluster {
            bootstrap,
            properties,
            connect_timeout,
        })
    }

    /// A client configuration for this cluster: the job's `properties`,
    /// then `bootstrap.servers`, with librdkafka's own log kept quiet (its
    /// errors reach the job through the calls that fail).
    pub fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        for (k, v) in &self.properties {
            config.set(k, v);
        }
        config
            .set("bootstrap.servers", &self.bootstrap)
            .set("log_level", "3");
        config
    }

    /// The one-line message of a client that could not be created.
    pub fn no_client(&self, e: &KafkaError) -> String {
        format!("cannot create a Kafka client for `{}`: {e}", self.bootstrap)
    }

    /// The cluster's metadata, of `topic` only when given (never creating
    /// it); waits at most `connect_timeout`.
    fn metadata(&self, topic: Option<&str>) -> Result<Metadata, String> {
        let consumer: BaseConsumer = self
            .client_config()
            .set("allow.auto.create.topics", "false")
            .create()
            .map_err(|e| self.no_client(&e))?;
        consumer
            .fetch_metadata(topic, self.connect_timeout)
            .map_err(|e| self.unreachable(&e))
    }

    /// The number of brokers in the cluster.
    pub fn brokers(&self) -> Result<usize, String> {
        Ok(self.metadata(None)?.brokers().len())
    }

    /// The replication factor of `topic` (its first partition's replicas);
    /// `None` when it does not exist.
    pub fn replicas(&self, topic: &str) -> Result<Option<usize>, String> {
        Ok(self
            .metadata(Some(topic))?
            .topics()
            .iter()
            .find(|t| t.name() == topic && t.error().is_none())
            .and_then(|t| t.partitions().first())
            .map(|p| p.replicas().len()))
    }

    /// The number of partitions of `topic`; `None` when it does not exist.
    /// Waits at most `connect_timeout` for the cluster to answer; an
    /// unreachable cluster is an error naming the address.
    pub fn partitions(&self, topic: &str) -> Result<Option<i32>, String> {
        let metadata = self.metadata(Some(topic))?;
        let Some(t) = metadata.topics().iter().find(|t| t.name() == topic) else {
            return Ok(None);
        };
        match t.error() {
            None => Ok(Some(t.partitions().len() as i32)),
            Some(e)
                if RDKafkaErrorCode::from(e) == RDKafkaErrorCode::UnknownTopicOrPartition
                    || RDKafkaErrorCode::from(e) == RDKafkaErrorCode::UnknownTopic =>
            {
                Ok(None)
            }
            Some(e) => Err(format!(
                "Kafka at `{}` cannot describe topic `{topic}`: {}",
                self.bootstrap,
                RDKafkaErrorCode::from(e)
            )),
        }
    }

    /// The number of partitions of `topic`, creating it when it does not
    /// exist and `create` says how; else an error naming the topic and the
    /// setting that would create it (`field` names the table, for the message).
    pub fn ensure_topic(
        &self,
        topic: &str,
        create: Option<CreateTopic>,
        field: &str,
    ) -> Result<i32, String> {
        if let Some(n) = self.partitions(topic)? {
            return Ok(n);
        }
        let Some(create) = create else {
            return Err(format!(
                "Kafka topic `{topic}` does not exist at `{}` (create it, or set `create = {{ partitions = N, replication = R }}` in {field})",
                self.bootstrap
            ));
        };
        self.create_topic(topic, create, &[])?;
        // The brokers learn of a new topic shortly after it is created: wait
        // (at most `connect_timeout`) until its metadata shows it.
        let deadline = std::time::Instant::now() + self.connect_timeout;
        loop {
            if let Some(n) = self.partitions(topic)? {
                return Ok(n);
            }
            if std::time::Instant::now() >= deadline {
                return Err(format!(
                    "Kafka topic `{topic}` was created at `{}` but cannot be described",
                    self.bootstrap
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Creates `topic` with extra topic settings `configs`; a topic that
    /// already exists (another process created it first) is not an error.
    pub fn create_topic(
        &self,
        topic: &str,
        create: CreateTopic,
        configs: &[(&str, &str)],
    ) -> Result<(), String> {
        let admin: AdminClient<DefaultClientContext> = self
            .client_config()
            .create()
            .map_err(|e| self.no_client(&e))?;
        let mut new = NewTopic::new(
            topic,
            create.partitions,
            TopicReplication::Fixed(create.replication),
        );
        for (k, v) in configs {
            new = new.set(k, v);
        }
        let options = AdminOptions::new().operation_timeout(Some(self.connect_timeout));
        let results = futures_executor::block_on(admin.create_topics([&new], &options))
            .map_err(|e| self.unreachable(&e))?;
        for result in results {
            match result {
                Ok(_) => {}
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((name, code)) => {
                    return Err(format!(
                        "cannot create Kafka topic `{name}` at `{}` ({} partitions, replication {}): {code}",
                        self.bootstrap, create.partitions, create.replication
                    ))
                }
            }
        }
        Ok(())
    }

    /// The one-line message of a cluster that did not answer in time.
    pub fn unreachable(&self, e: &KafkaError) -> String {
        format!(
            "cannot reach Kafka at `{}` within {} (`connect_timeout`): {e}",
            self.bootstrap,
            humantime::format_duration(self.connect_timeout)
        )
    }
}

/// Reads `create = { partitions = N, replication = R }` of a table, if given.
pub fn create_field(t: &Table<'_, '_>, f: &mut Fields) -> Result<Option<CreateTopic>, JobError> {
    t.opt(&f.take("create"), |v| {
        let bad = |message: String| t.fail(v.span(), format!("`create`: {message}"));
        let toml::Value::Table(table) = v.get_ref() else {
            return Err(bad(
                "must be a table such as `{ partitions = 3, replication = 1 }`".to_string(),
            ));
        };
        if let Some(k) = table
            .keys()
            .find(|k| !["partitions", "replication"].contains(&k.as_str()))
        {
            return Err(bad(format!(
                "unknown field `{k}`, expected `partitions` or `replication`"
            )));
        }
        let int = |name: &str, min: i64, max: i64| -> Result<Option<i32>, JobError> {
            match table.get(name) {
                None => Ok(None),
                Some(toml::Value::Integer(n)) if (min..=max).contains(n) => Ok(Some(*n as i32)),
                Some(other) => Err(bad(format!(
                    "`{name}` must be an integer from {min} to {max}, found {}",
                    crate::model::config::describe(other)
                ))),
            }
        };
        let partitions = int("partitions", 1, i32::MAX as i64)?.ok_or_else(|| {
            bad("missing `partitions` (the new topic's partition count)".to_string())
        })?;
        let replication = match int("replication", -1, i16::MAX as i64)? {
            Some(0) => {
                return Err(bad(
                    "`replication` must be at least 1 (or -1: the broker's default)".to_string(),
                ))
            }
            Some(r) => r,
            None => -1,
        };
        Ok(CreateTopic {
            partitions,
            replication,
        })
    })
}
