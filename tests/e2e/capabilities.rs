//! WASI capabilities: an operator reaches no files, environment variables or
//! network unless the job file grants them (`[operators.capabilities]`), and
//! a guest that tries gets an error, never access.

use crate::harness::{operator, toml_path, Sandbox};

const TRIES: &str = r#"{"key":"a","value":"read:/etc/hostname"}
{"key":"a","value":"read:/data/greeting.txt"}
{"key":"a","value":"list:/"}
{"key":"a","value":"list:/data"}
{"key":"a","value":"write:/data/new.txt"}
{"key":"a","value":"write:/rw/new.txt"}
{"key":"a","value":"env:HOME"}
{"key":"a","value":"env:TZ"}
{"key":"a","value":"connect:127.0.0.1:PORT"}
"#;

fn job(capabilities: &str) -> String {
    format!(
        r#"
name = "caps"

[source]
type = "file"
path = "in.jsonl"

[[operators]]
id = "probe"
wasm = {probe}
{capabilities}

[sink]
type = "file"
path = "out.jsonl"
"#,
        probe = toml_path(&operator("probe"))
    )
}

/// What the probe answered to each try, in order.
fn answers(sandbox: &Sandbox) -> Vec<String> {
    sandbox
        .read("out.jsonl")
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["value"].as_str().unwrap().to_string()
        })
        .collect()
}

fn setup() -> (Sandbox, std::net::TcpListener) {
    let sandbox = Sandbox::new();
    sandbox.write("data/greeting.txt", "hello\n");
    std::fs::create_dir_all(sandbox.path("rw")).unwrap();
    // A listener that accepts, so that a granted connect succeeds.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    sandbox.write("in.jsonl", TRIES.replace("PORT", &port.to_string()));
    (sandbox, listener)
}

#[test]
fn an_operator_gets_no_files_environment_or_network_by_default() {
    let (sandbox, _listener) = setup();
    // weir's own environment has HOME and TZ; the operator must not see them.
    sandbox.write("job.toml", job(""));
    sandbox
        .cmd(&["run", "job.toml"])
        .env("TZ", "Europe/Paris")
        .run()
        .ok();
    let got = answers(&sandbox);
    assert_eq!(got.len(), 9, "{got:?}");
    for (i, answer) in got.iter().enumerate() {
        assert!(answer.starts_with("err:"), "try {i} got access: {answer}");
    }
    assert!(got[0].contains("No such file"), "{}", got[0]);
    assert!(got[6].contains("not found"), "{}", got[6]);
    assert!(got[8].contains("Permission denied"), "{}", got[8]);
    assert!(!sandbox.path("data/new.txt").exists());
    assert!(!sandbox.path("rw/new.txt").exists());
}

#[test]
fn granted_capabilities_reach_the_operator_and_nothing_more() {
    let (sandbox, listener) = setup();
    sandbox.write(
        "job.toml",
        job(r#"
[operators.capabilities]
env = { TZ = "UTC" }
dirs = { "/data" = "data" }
writable_dirs = { "/rw" = "rw" }
network = true
"#),
    );
    std::thread::spawn(move || {
        let _ = listener.accept();
    });
    sandbox
        .cmd(&["run", "job.toml"])
        .env("TZ", "Europe/Paris")
        .run()
        .ok();
    let got = answers(&sandbox);
    assert_eq!(
        got,
        [
            "err:No such file or directory (os error 44)",
            "ok:hello",
            "err:No such file or directory (os error 44)",
            "ok:greeting.txt",
            "err:Operation not permitted (os error 63)",
            "ok:written",
            "err:environment variable not found",
            "ok:UTC",
            "ok:connected",
        ]
    );
    assert!(!sandbox.path("data/new.txt").exists());
    assert_eq!(sandbox.read("rw/new.txt"), "written by probe");
}

#[test]
fn bad_capabilities_are_refused_with_field_and_line() {
    let sandbox = Sandbox::new();
    sandbox.write("in.jsonl", "");
    for (caps, needles) in [
        (
            "[operators.capabilities]\ndirs = { \"data\" = \"data\" }",
            &[
                "job.toml:",
                "operator `probe` capabilities",
                "must be absolute",
            ][..],
        ),
        (
            "[operators.capabilities]\ndirs = { \"/data\" = \"missing\" }",
            &["is not a folder", "missing"][..],
        ),
        (
            "[operators.capabilities]\nnetwork = \"yes\"",
            &["`network` must be true or false"][..],
        ),
        (
            "[operators.capabilities]\nfiles = true",
            &["unknown field `files`"][..],
        ),
        (
            "[operators.capabilities]\nenv = { TZ = 1 }",
            &["`env.TZ` must be a string"][..],
        ),
    ] {
        sandbox.write("job.toml", job(caps));
        sandbox.weir(&["run", "job.toml"]).fails_with(needles);
    }
}
