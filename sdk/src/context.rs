//! The operator's view of its subtask: where it runs, its config, state
//! handles, timers, watermark.

use std::collections::BTreeMap;
use std::rc::Rc;
use std::str::FromStr;

use crate::event::{Error, TimeDomain};
use crate::runtime::wit::{timers, types};
use crate::state::{Flush, ListState, MapState, StateKind, StateSpec, ValueState};

/// Where a subtask runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskInfo {
    /// The operator ID in the job.
    pub operator_id: String,
    /// Index of this subtask, from 0.
    pub subtask: u32,
    /// Number of subtasks of the operator.
    pub parallelism: u32,
    /// Number of key groups of the job.
    pub max_parallelism: u32,
    /// How many times the job has been restarted after a failure (0 at first).
    pub attempt: u32,
}

/// The operator's `config` table from the job file: string keys and values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    entries: BTreeMap<String, String>,
}

impl Config {
    pub(crate) fn new(entries: Vec<(String, String)>) -> Self {
        Config {
            entries: entries.into_iter().collect(),
        }
    }

    /// The value of `name`, if set.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.entries.get(name).map(String::as_str)
    }

    /// The value of `name` parsed as `T`, `default` if unset, or an error
    /// message naming the entry if it does not parse.
    pub fn parse_or<T: FromStr>(&self, name: &str, default: T) -> Result<T, String>
    where
        T::Err: std::fmt::Display,
    {
        match self.get(name) {
            None => Ok(default),
            Some(text) => text
                .trim()
                .parse()
                .map_err(|e| format!("config `{name}` = {text:?} is not valid: {e}")),
        }
    }

    /// The value of `name` parsed as `T`, or an error message if it is unset or
    /// does not parse.
    pub fn require<T: FromStr>(&self, name: &str) -> Result<T, String>
    where
        T::Err: std::fmt::Display,
    {
        let text = self
            .get(name)
            .ok_or_else(|| format!("config `{name}` is required"))?;
        text.trim()
            .parse()
            .map_err(|e| format!("config `{name}` = {text:?} is not valid: {e}"))
    }

    /// Every entry, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

/// Timer registrations and deletions buffered until the call ends, in
/// order, flat: no allocation per timer once the buffers have grown.
struct TimerOps {
    /// Each op's domain, whether it registers, and its timestamp.
    ops: Vec<(TimeDomain, bool, i64)>,
    /// Each op's key, flat (-1: none).
    keys: types::Blobs,
    /// Reused buffers of one host call.
    call_keys: types::Blobs,
    call_times: Vec<i64>,
}

impl Default for TimerOps {
    fn default() -> Self {
        let blobs = || types::Blobs {
            data: Vec::new(),
            lens: Vec::new(),
        };
        TimerOps {
            ops: Vec::new(),
            keys: blobs(),
            call_keys: blobs(),
            call_times: Vec::new(),
        }
    }
}

impl TimerOps {
    fn push(&mut self, domain: TimeDomain, register: bool, key: Option<&[u8]>, timestamp: i64) {
        self.ops.push((domain, register, timestamp));
        match key {
            Some(k) => {
                crate::bytes::extend(&mut self.keys.data, k);
                self.keys.lens.push(k.len() as i32);
            }
            None => self.keys.lens.push(-1),
        }
    }

    /// Sends the ops to the host, one call per run of the same domain and kind.
    fn flush(&mut self) {
        let mut at = 0usize;
        let mut i = 0;
        while i < self.ops.len() {
            let (domain, register, _) = self.ops[i];
            self.call_keys.data.clear();
            self.call_keys.lens.clear();
            self.call_times.clear();
            while let Some(&(d, r, timestamp)) = self.ops.get(i) {
                if d != domain || r != register {
                    break;
                }
                let len = self.keys.lens[i];
                if len >= 0 {
                    let end = at + len as usize;
                    crate::bytes::extend(&mut self.call_keys.data, &self.keys.data[at..end]);
                    at = end;
                }
                self.call_keys.lens.push(len);
                self.call_times.push(timestamp);
                i += 1;
            }
            if register {
                timers::register_many(domain.to_wit(), &self.call_keys, &self.call_times);
            } else {
                timers::delete_many(domain.to_wit(), &self.call_keys, &self.call_times);
            }
        }
        self.ops.clear();
        self.keys.data.clear();
        self.keys.lens.clear();
    }
}

/// The operator's handle on its subtask, passed to every [`crate::Operator`] call.
pub struct Context {
    task: TaskInfo,
    config: Config,
    declared: Vec<StateSpec>,
    caches: Vec<Rc<dyn Flush>>,
    /// The value and map states opened, by name: opening one again shares
    /// its cache, which holds values from call to call.
    opened: Vec<(String, Rc<dyn std::any::Any>)>,
    timer_ops: TimerOps,
    watermark: Option<i64>,
}

impl Context {
    pub(crate) fn new(task: TaskInfo, config: Config, declared: Vec<StateSpec>) -> Self {
        Context {
            task,
            config,
            declared,
            caches: Vec::new(),
            opened: Vec::new(),
            timer_ops: TimerOps::default(),
            watermark: None,
        }
    }

    /// Where this subtask runs.
    pub fn task(&self) -> &TaskInfo {
        &self.task
    }

    /// The operator's config from the job file.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The cache of state `name` if a handle on it is open already.
    fn opened(&self, name: &str) -> Option<Rc<dyn std::any::Any>> {
        self.opened
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, cache)| cache.clone())
    }

    fn check_declared(&self, name: &str, kind: StateKind) -> Result<(), String> {
        match self.declared.iter().find(|s| s.name == name) {
            None => Err(format!(
                "state `{name}` is not declared in `Operator::states`"
            )),
            Some(s) if s.kind != kind => Err(format!(
                "state `{name}` is declared as {:?} state, not {kind:?}",
                s.kind
            )),
            Some(_) => Ok(()),
        }
    }

    /// Opens the declared value state `name`.
    pub fn value_state<T>(&mut self, name: &str) -> Result<ValueState<T>, String>
    where
        T: serde::Serialize + serde::de::DeserializeOwned + Clone + 'static,
    {
        self.check_declared(name, StateKind::Value)?;
        if let Some(cache) = self.opened(name) {
            return ValueState::from_shared(cache).ok_or_else(|| {
                format!("value state `{name}` is already open with another value type")
            });
        }
        let state = ValueState::open(name)?;
        self.caches.push(state.flusher());
        self.opened.push((name.to_string(), state.shared()));
        Ok(state)
    }

    /// Opens the declared map state `name`.
    pub fn map_state<K, V>(&mut self, name: &str) -> Result<MapState<K, V>, String>
    where
        K: serde::Serialize + serde::de::DeserializeOwned + 'static,
        V: serde::Serialize + serde::de::DeserializeOwned + Clone + 'static,
    {
        self.check_declared(name, StateKind::Map)?;
        if let Some(cache) = self.opened(name) {
            return MapState::from_shared(cache).ok_or_else(|| {
                format!("map state `{name}` is already open with another value type")
            });
        }
        let state = MapState::open(name)?;
        self.caches.push(state.flusher());
        self.opened.push((name.to_string(), state.shared()));
        Ok(state)
    }

    /// Opens the declared list state `name`.
    pub fn list_state<T>(&mut self, name: &str) -> Result<ListState<T>, String>
    where
        T: serde::Serialize + serde::de::DeserializeOwned + 'static,
    {
        self.check_declared(name, StateKind::List)?;
        let state = ListState::open(name)?;
        self.caches.push(state.flusher());
        Ok(state)
    }

    /// Registers a timer for `key` at `timestamp` (ms) in `domain`; the
    /// operator's `on_timer` is called when it fires. Registering the same
    /// (key, time) again keeps one timer.
    ///
    /// `key` must be `Some` (the event's key): timers are kept per key, in
    /// the key's key group, so that checkpoints, savepoints and a change of
    /// parallelism move them with the key. The host refuses a timer with no
    /// key: the call traps and the subtask fails.
    pub fn register_timer(&mut self, domain: TimeDomain, key: Option<&[u8]>, timestamp: i64) {
        self.timer_ops.push(domain, true, key, timestamp);
    }

    /// Deletes the timer for `key` at `timestamp` in `domain`, if there is
    /// one. As for [`Context::register_timer`], `key` must be `Some`.
    pub fn delete_timer(&mut self, domain: TimeDomain, key: Option<&[u8]>, timestamp: i64) {
        self.timer_ops.push(domain, false, key, timestamp);
    }

    /// The current event-time watermark (ms); `i64::MIN` before the first one.
    /// Events at or behind it are late.
    pub fn watermark(&mut self) -> i64 {
        *self.watermark.get_or_insert_with(timers::current_watermark)
    }

    /// The wall clock, ms since the Unix epoch, as processing-time timers see it.
    pub fn processing_time(&self) -> i64 {
        timers::processing_time()
    }

    pub(crate) fn begin_call(&mut self) {
        self.watermark = None;
    }

    /// Sends every buffered state write and timer change to the host.
    pub(crate) fn flush(&mut self) -> Result<(), Error> {
        let mut result = Ok(());
        for cache in &self.caches {
            if let Err(e) = cache.flush() {
                result = Err(e);
            }
        }
        self.flush_timers();
        result
    }

    fn flush_timers(&mut self) {
        self.timer_ops.flush();
    }
}
