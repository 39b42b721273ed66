//! Bounded fuzzing in the normal test suite: the job-file parser, the
//! savepoint reader (manifest and data files) and the checkpoint reader are
//! fed thousands of mutations of real inputs (bytes flipped, cut, repeated,
//! spliced) and must answer each with a clean error or a result, never a
//! panic; and any change to a savepoint's `_metadata` must be refused, with
//! an error naming it. Each run draws a new seed and prints it
//! (`WEIR_TEST_SEED=…`): set that variable to replay a failing sequence.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use weir_host::job::JobSpec;
use weir_host::state::savepoint::{decode_data, Savepoint};

use crate::harness::{final_counts, operator, root, run_and_stop_after, Rng, Sandbox};

/// One random mutation of `bytes`.
fn mutate(rng: &mut Rng, bytes: &[u8], tokens: &[&[u8]]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    for _ in 0..rng.range(1, 4) {
        let at = if out.is_empty() {
            0
        } else {
            rng.range(0, out.len() as u64) as usize
        };
        match rng.range(0, 6) {
            0 if !out.is_empty() => out[at] ^= 1 << rng.range(0, 8),
            1 => out.truncate(at),
            2 if !out.is_empty() => {
                let end = (at + rng.range(1, 16) as usize).min(out.len());
                out.drain(at..end);
            }
            3 => {
                let token = tokens[rng.range(0, tokens.len() as u64) as usize];
                out.splice(at..at, token.iter().copied());
            }
            4 if !out.is_empty() => {
                // Repeat a slice, as a length field pointing past the data would.
                let end = (at + rng.range(1, 64) as usize).min(out.len());
                let piece = out[at..end].to_vec();
                out.splice(at..at, piece);
            }
            _ => out.push(rng.range(0, 256) as u8),
        }
    }
    out
}

/// Runs `f`, failing the test with `what` if it panics.
fn no_panic<T>(what: &str, f: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|_| panic!("panicked on {what}"))
}

#[test]
fn the_job_file_parser_never_panics() {
    let mut rng = Rng::from_env();
    let mut seeds: Vec<String> = [
        "wordcount/job.toml",
        "windows/job.toml",
        "recovery/job.toml",
    ]
    .iter()
    .map(|f| std::fs::read_to_string(root().join("examples").join(f)).unwrap())
    .collect();
    seeds.push(
        r#"name = "x"
[source]
type = "generator"
count = 10
[[operators]]
id = "a"
wasm = "a.wasm"
[operators.capabilities]
env = { A = "1" }
network = true
[operators.limits]
memory = "64MiB"
cpu_per_call = "1s"
[sink]
type = "blackhole"
[checkpoint]
interval = "1s"
[restart]
strategy = "exponential"
"#
        .to_string(),
    );
    let tokens: &[&[u8]] = &[
        b"[[operators]]\n",
        b"[source]\n",
        b"\"",
        b"'''",
        b"= {",
        b"= [",
        b"}",
        b"\n",
        b"99999999999999999999",
        b"-1",
        b"\"1.5s\"",
        b"\xff\xfe",
        b"\\u0000",
        b"inf",
    ];
    let path = Path::new("/fuzz/job.toml");
    for i in 0..4000 {
        let seed = &seeds[i % seeds.len()];
        let text = mutate(&mut rng, seed.as_bytes(), tokens);
        let text = String::from_utf8_lossy(&text);
        let result = no_panic(&format!("job file:\n{text}"), || {
            JobSpec::parse(&text, path)
                .map(|_| ())
                .map_err(|e| e.to_string())
        });
        if let Err(message) = result {
            assert!(!message.contains('\n'), "a two-line error: {message:?}");
            assert!(message.starts_with("/fuzz/job.toml"), "{message}");
        }
    }
}

/// A real savepoint of a keyed count, taken by `weir stop`.
fn real_savepoint(sb: &Sandbox) -> std::path::PathBuf {
    sb.write(
        "job.toml",
        crate::harness::counts_job(&operator("keyed-count"), 2, Some(3000), ""),
    );
    run_and_stop_after(sb, "job.toml", &[], &["--savepoint", "sp"], 300)
}

#[test]
fn the_savepoint_reader_never_panics() {
    let mut rng = Rng::from_env();
    let sb = Sandbox::new();
    let sp = real_savepoint(&sb);
    let manifest = std::fs::read(sp.join("_metadata")).unwrap();
    let data_files: Vec<Vec<u8>> = std::fs::read_dir(&sp)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "state"))
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    assert!(!data_files.is_empty());

    // Data files: the decoder itself (the checksum would catch most damage first).
    let tokens: &[&[u8]] = &[&[0xff; 4], &[0; 8], &[0x7f, 0xff, 0xff, 0xff], b"WEIRSPD1"];
    for i in 0..3000 {
        let bytes = mutate(&mut rng, &data_files[i % data_files.len()], tokens);
        let result = no_panic("a savepoint data file", || {
            decode_data(&bytes, 0..u32::MAX, |_| Ok(()))
        });
        if let Err(message) = result {
            assert!(!message.contains('\n'), "{message:?}");
        }
    }

    // The manifest, read as `weir run --from-savepoint` and `verify` read it.
    let copy = sb.path("damaged");
    let _ = std::fs::remove_dir_all(&copy);
    std::fs::create_dir_all(&copy).unwrap();
    for entry in std::fs::read_dir(&sp).unwrap() {
        let p = entry.unwrap().path();
        std::fs::copy(&p, copy.join(p.file_name().unwrap())).unwrap();
    }
    let tokens: &[&[u8]] = &[
        b"\"",
        b"{",
        b"]",
        b"null",
        b"-1",
        b"18446744073709551616",
        b"\"../../etc/passwd\"",
        b"\"/abs\"",
        b"4294967295",
    ];
    for _ in 0..1500 {
        let bytes = mutate(&mut rng, &manifest, tokens);
        std::fs::write(copy.join("_metadata"), &bytes).unwrap();
        let result = no_panic(
            &format!("_metadata:\n{}", String::from_utf8_lossy(&bytes)),
            || {
                let s = Savepoint::open(&copy).map_err(|e| e.to_string())?;
                s.verify().map_err(|e| e.to_string())?;
                for op in &s.meta.operators {
                    s.load(&op.id, 0..u32::MAX, |_| Ok(()))
                        .map_err(|e| e.to_string())?;
                }
                Ok::<(), String>(())
            },
        );
        match result {
            Err(message) => {
                assert!(!message.contains('\n'), "{message:?}");
                assert!(message.contains("_metadata"), "{message}");
            }
            // `_metadata` checks itself: any change to it is refused.
            Ok(()) => assert_eq!(
                bytes,
                manifest,
                "a changed _metadata was accepted:\n{}",
                String::from_utf8_lossy(&bytes)
            ),
        }
    }
}

#[test]
fn a_damaged_checkpoint_store_restores_correctly_or_fails_in_one_line() {
    let mut rng = Rng::from_env();
    let sb = Sandbox::new();
    // A job with a few checkpoints, run to the end.
    let job = format!(
        "{}\n[checkpoint]\ninterval = \"20ms\"\ndir = \"state\"\n",
        crate::harness::counts_job(&operator("keyed-count"), 2, Some(20000), "")
            .replace("[rest]\naddr = \"127.0.0.1:0\"", "")
    );
    sb.write("job.toml", &job);
    sb.weir(&["run", "job.toml"]).ok();
    let output = sb.read("out.jsonl");
    let expected = final_counts(&output);
    // The oldest checkpoint kept: restoring it replays the input after it.
    let list = sb.weir(&["checkpoints", "list", "--json", "state"]).ok();
    let list: serde_json::Value = serde_json::from_str(&list.stdout).unwrap();
    let oldest = list
        .as_array()
        .and_then(|l| l.iter().filter_map(|c| c["id"].as_u64()).min())
        .unwrap_or_else(|| panic!("no checkpoint listed: {list}"))
        .to_string();
    let state = sb.path("state");
    let files: Vec<std::path::PathBuf> = walk(&state);
    assert!(!files.is_empty());
    let (mut restored, mut refused) = (0, 0);
    for round in 0..40 {
        let copy = format!("damaged-{round}");
        for f in &files {
            let to = sb.path(&copy).join(f.strip_prefix(&state).unwrap());
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            std::fs::copy(f, &to).unwrap();
        }
        // Damage one file of the copy.
        let victim = &files[rng.range(0, files.len() as u64) as usize];
        let target = sb.path(&copy).join(victim.strip_prefix(&state).unwrap());
        let bytes = std::fs::read(&target).unwrap();
        std::fs::write(&target, mutate(&mut rng, &bytes, &[&[0xff; 8], &[0; 8]])).unwrap();
        // `weir checkpoints list` reads every checkpoint's metadata: it may
        // succeed (damage sled repairs or never reads) or fail, in one line.
        let run = sb.weir(&["checkpoints", "list", &copy]);
        if !run.status.success() {
            run.fails_with(&[]);
        }
        // A restore from the damaged store, with the output as the run left it.
        sb.write(&format!("out-{round}.jsonl"), &output);
        let job_file = format!("job-{round}.toml");
        sb.write(
            &job_file,
            job.replace("dir = \"state\"", &format!("dir = \"{copy}\""))
                .replace(
                    "path = \"out.jsonl\"",
                    &format!("path = \"out-{round}.jsonl\""),
                ),
        );
        let run = sb.weir(&["run", &job_file, "--from-checkpoint", &oldest]);
        if run.status.success() {
            // Then the restore is right: every count once, in order, to the end.
            let restored_output = sb.read(&format!("out-{round}.jsonl"));
            crate::harness::assert_counts_continue(&restored_output);
            assert_eq!(
                final_counts(&restored_output),
                expected,
                "restoring checkpoint {oldest} from a damaged {victim:?} gave wrong counts"
            );
            restored += 1;
        } else {
            run.fails_with(&[]);
            refused += 1;
        }
        let _ = std::fs::remove_dir_all(sb.path(&copy));
    }
    eprintln!("{restored} restored, {refused} refused");
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out.sort();
    out
}
