//! `hostile-escape`: a guest that tries to reach beyond its sandbox through
//! WASI (`std::fs`, `std::env`, `std::net`). Written against the raw WIT
//! contract (no SDK), like every program in `tests/plugins/hostile`.
//!
//! For each event whose value is `escape` it makes every attempt of
//! [`ATTEMPTS`] and emits one event per attempt, keyed by the attempt (e.g.
//! `read /etc/passwd`), with value `ok:WHAT` (the first line read, the names
//! listed, ...) or `err:ERROR`. Other events pass through unchanged. Config:
//! `tag` and `connect` stand for `TAG` and `ADDR` in the attempts.
//!
//! The host must let every attempt fail with a WASI error unless the job
//! grants it (`[operators.capabilities]`); a granted folder (`/data`)
//! reaches that folder and nothing else: no `..`, no symbolic link out.

wit_bindgen::generate!({ path: "../../../../wit", world: "operator" });

use std::cell::RefCell;

use exports::weir::operator::guest::{
    Batch, Blobs, Error, Guest, MigrateError, OperatorSpec, TaskInfo, Timers,
};

/// What it tries, `VERB ARGUMENT`.
const ATTEMPTS: [&str; 11] = [
    "read /etc/passwd",
    "list /",
    "write /tmp/weir-escape-TAG",
    "env HOME",
    "env *",
    "connect ADDR",
    "read /data/secret.txt",
    "read /data/../outside.txt",
    "list /data/..",
    "read /data/link",
    "write /data/planted.txt",
];

thread_local! {
    /// `TAG` and `ADDR`, from the config.
    static CONFIG: RefCell<(String, String)> = RefCell::default();
}

fn attempt(verb: &str, arg: &str) -> std::io::Result<String> {
    use std::fs;
    let sorted = |mut names: Vec<String>| {
        names.sort();
        names.join(",")
    };
    match verb {
        "read" => fs::read_to_string(arg).map(|t| t.lines().next().unwrap_or("").into()),
        "list" => fs::read_dir(arg).map(|entries| {
            sorted(
                entries
                    .filter_map(|e| Some(e.ok()?.file_name().to_string_lossy().into()))
                    .collect(),
            )
        }),
        "write" => fs::write(arg, "escaped").map(|()| "written".into()),
        "env" if arg == "*" => Ok(sorted(std::env::vars().map(|(k, _)| k).collect())),
        "env" => std::env::var(arg).map_err(std::io::Error::other),
        _ => std::net::TcpStream::connect(arg).map(|_| "connected".into()),
    }
}

struct Escape;

impl Guest for Escape {
    fn describe() -> OperatorSpec {
        OperatorSpec {
            name: "hostile-escape".into(),
            version: "0.1.0".into(),
            states: Vec::new(),
        }
    }

    fn open(_task: TaskInfo, config: Vec<(String, String)>) -> Result<(), String> {
        let get = |name: &str| {
            config
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        CONFIG.set((
            get("tag").unwrap_or_default(),
            get("connect").unwrap_or_default(),
        ));
        Ok(())
    }

    fn process(input: Batch) -> Result<Batch, Error> {
        let mut out = Batch {
            data: Vec::new(),
            key_lens: Vec::new(),
            value_lens: Vec::new(),
            timestamps: Vec::new(),
        };
        let mut push = |key_len: i32, key: &[u8], value: &[u8], timestamp: i64| {
            out.data.extend_from_slice(key);
            out.data.extend_from_slice(value);
            out.key_lens.push(key_len);
            out.value_lens.push(value.len() as u32);
            out.timestamps.push(timestamp);
        };
        let mut at = 0;
        for (i, (&key_len, &value_len)) in input.key_lens.iter().zip(&input.value_lens).enumerate()
        {
            let (key, rest) = input.data[at..].split_at(key_len.max(0) as usize);
            let value = &rest[..value_len as usize];
            at += key.len() + value.len();
            if value != b"escape" {
                push(key_len, key, value, input.timestamps[i]);
                continue;
            }
            for what in ATTEMPTS {
                let (verb, arg) = what.split_once(' ').expect("VERB ARGUMENT");
                let arg =
                    CONFIG.with_borrow(|(tag, addr)| arg.replace("TAG", tag).replace("ADDR", addr));
                let answer = match attempt(verb, &arg) {
                    Ok(found) => format!("ok:{found}"),
                    Err(e) => format!("err:{e}"),
                };
                push(
                    what.len() as i32,
                    what.as_bytes(),
                    answer.as_bytes(),
                    input.timestamps[i],
                );
            }
        }
        Ok(out)
    }

    fn on_timer(_fired: Timers) -> Result<Batch, Error> {
        Ok(Batch {
            data: Vec::new(),
            key_lens: Vec::new(),
            value_lens: Vec::new(),
            timestamps: Vec::new(),
        })
    }

    fn migrate(_state: String, _from: u32, values: Blobs) -> Result<Blobs, MigrateError> {
        Ok(values)
    }
}

export!(Escape);
