//! The CLI around running jobs: `weir build`, `weir operator inspect`, the
//! component cache, `weir run --ready-file`.

use crate::harness::{counts_job, http, operator, root, toml_path, Sandbox, Weir};

#[test]
fn inspect_prints_name_version_and_states() {
    let sb = Sandbox::new();
    let wasm = operator("windowed-sum");
    let run = sb
        .weir(&["operator", "inspect", wasm.to_str().unwrap()])
        .ok();
    assert!(run.stdout.contains("windowed-sum 1.0.0"), "{}", run.stdout);
    assert!(run.stdout.contains("sums  map  v1"), "{}", run.stdout);
    let run = sb
        .weir(&[
            "operator",
            "inspect",
            "--json",
            operator("keyed-count").to_str().unwrap(),
        ])
        .ok();
    let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(v["name"], "keyed-count");
    assert_eq!(v["version"], "1.0.0");
    assert_eq!(
        v["states"],
        serde_json::json!([{"name": "count", "kind": "value", "version": 1}])
    );
    assert_eq!(v["sha256"].as_str().unwrap().len(), 64);
    assert!(v["imports"]
        .as_array()
        .unwrap()
        .iter()
        .any(|i| i == "weir:operator/state@0.1.0"));
}

#[test]
fn build_writes_to_the_chosen_path() {
    let sb = Sandbox::new();
    operator("dedupe"); // the plugin workspace is built once already
    let out = sb.path("built/dd.wasm");
    let run = sb
        .weir(&[
            "build",
            root().join("plugins/rust/dedupe").to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ])
        .ok();
    assert_eq!(run.stdout.trim(), out.display().to_string());
    let bytes = std::fs::read(&out).unwrap();
    assert_eq!(&bytes[0..8], b"\0asm\x0d\x00\x01\x00");
}

#[test]
fn build_refuses_a_folder_it_cannot_build() {
    let sb = Sandbox::new();
    sb.write("empty/readme.txt", "nothing to build");
    sb.weir(&["build", "empty"])
        .fails_with(&["empty", "language"]);
    sb.weir(&["build", "nowhere"]).fails_with(&["nowhere"]);
}

#[test]
fn a_second_start_uses_the_compiled_component_cache() {
    let sb = Sandbox::new();
    sb.write("in.jsonl", "{\"key\": \"a\", \"value\": \"1\"}\n");
    sb.write(
        "job.toml",
        format!(
            "name = \"cache\"\n[source]\ntype = \"file\"\npath = \"in.jsonl\"\n[[operators]]\nid = \"c\"\nwasm = {}\n[sink]\ntype = \"file\"\npath = \"out.jsonl\"\n",
            toml_path(&operator("keyed-count"))
        ),
    );
    let env = [("WEIR_LOG", "weir_host::wasm::component=debug")];
    let first = sb.cmd(&["run", "job.toml"]).envs(&env).run().ok();
    assert!(
        first.stderr.contains("component compiled"),
        "{}",
        first.stderr
    );
    let second = sb.cmd(&["run", "job.toml"]).envs(&env).run().ok();
    assert!(
        second.stderr.contains("component loaded from cache"),
        "{}",
        second.stderr
    );
    assert!(
        !second.stderr.contains("component compiled"),
        "{}",
        second.stderr
    );
    assert_eq!(sb.read("out.jsonl").lines().count(), 1);
}

#[test]
fn a_closed_standard_output_ends_a_command_quietly() {
    // `weir operator inspect … | true`: the reader is gone before weir writes.
    let wasm = operator("probe");
    for _ in 0..3 {
        let mut child = Weir::new(&["operator", "inspect"])
            .arg(&wasm)
            .into_command()
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{:?}: {stderr}", out.status);
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[test]
fn the_ready_file_holds_the_rest_address_once_it_listens() {
    let sb = Sandbox::new();
    let job = counts_job(&operator("keyed-count"), 1, Some(2000), "");
    sb.write("job.toml", &job);
    std::fs::create_dir_all(sb.path("ready")).unwrap();
    let mut child = sb
        .cmd(&["run", "job.toml", "--ready-file", "ready/addr"])
        .log("log")
        .start();
    sb.wait_for("ready/addr", "\n", 1);
    let text = sb.read("ready/addr");
    let addr: std::net::SocketAddr = text
        .strip_suffix('\n')
        .unwrap_or_else(|| panic!("{text:?}"))
        .parse()
        .unwrap_or_else(|e| panic!("{text:?}: {e}"));
    assert_eq!(addr.ip().to_string(), "127.0.0.1");
    assert_ne!(addr.port(), 0);
    assert_eq!(
        std::fs::read_dir(sb.path("ready")).unwrap().count(),
        1,
        "a temporary file was left"
    );
    assert!(sb.read("log").contains(&format!("at http://{addr}")));
    let (status, _) = http(&addr.to_string(), "GET", "/jobs/counts", "");
    assert_eq!(status, 200);
    sb.weir(&["stop", "--addr", &addr.to_string()]).ok();
    assert!(child.wait().success(), "{}", sb.read("log"));

    // Without a REST API there is no address to wait for: refused.
    sb.write(
        "plain.toml",
        job.replace("[rest]\naddr = \"127.0.0.1:0\"\n", ""),
    );
    sb.weir(&["run", "plain.toml", "--ready-file", "plain.addr"])
        .fails_with(&[
            "--ready-file",
            "serves no REST API",
            "plain.toml",
            "--rest-addr",
        ]);
    assert!(!sb.path("plain.addr").exists());
}
