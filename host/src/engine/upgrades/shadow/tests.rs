//! The shadow run's comparison and replay, tested.

use crate::model::{Batch, TimeDomain};
use crate::wasm::operator::SubtaskCtx;

use super::*;

fn batch(events: &[(Option<&str>, &str, i64)]) -> Batch {
    let mut b = Batch::with_capacity(events.len(), 64);
    for (k, v, t) in events {
        b.push(k.map(str::as_bytes), v.as_bytes(), *t);
    }
    b
}

#[test]
fn identical_outputs_have_no_difference() {
    let input = batch(&[(Some("a"), "x", 1), (Some("b"), "y", 2)]);
    let out = batch(&[(Some("a"), "1", 1), (Some("b"), "1", 2)]);
    let mut c = Comparator::new(0, None, None);
    let cause = Cause::Input {
        batch: &input,
        offsets: Some(&[0, 1]),
    };
    assert_eq!(
        c.compare(
            cause,
            std::slice::from_ref(&out),
            std::slice::from_ref(&out)
        )
        .unwrap(),
        0
    );
    assert_eq!(c.counts.inputs, 2);
    assert_eq!(c.counts.compared, 2);
    assert_eq!(c.counts.equal, 2);
    assert!(c.first.is_empty());
}

#[test]
fn pairs_by_key_in_order_and_counts_extras() {
    let input = batch(&[(Some("a"), "", 0), (Some("b"), "", 0), (Some("a"), "", 0)]);
    // Across keys, order may differ; within a key it is kept.
    let live = vec![
        batch(&[(Some("a"), "1", 5), (Some("b"), "1", 5)]),
        batch(&[(Some("a"), "2", 5)]),
    ];
    let cand = vec![batch(&[
        (Some("b"), "1", 5),
        (Some("a"), "1", 5),
        (Some("a"), "two", 5),
        (Some("a"), "3", 5),
        (None, "x", 5),
    ])];
    let dir = tempfile::tempdir().unwrap();
    let file = DiffFile::create(&dir.path().join("d/diff.jsonl")).unwrap();
    let mut c = Comparator::new(3, None, Some(file.clone()));
    let cause = Cause::Input {
        batch: &input,
        offsets: Some(&[10, 11, 12]),
    };
    assert_eq!(c.compare(cause, &live, &cand).unwrap(), 3);
    assert_eq!(
        c.counts,
        Counts {
            inputs: 3,
            compared: 5,
            equal: 2,
            different: 1,
            only_live: 0,
            only_candidate: 2,
        }
    );
    let d = &c.first[0];
    assert_eq!(d.kind, DiffKind::Different);
    assert_eq!(d.key.as_deref(), Some("a"));
    // The second output of `a` lines up with the second input event of `a`.
    assert_eq!(d.offset, Some(12));
    assert_eq!(d.subtask, 3);
    assert_eq!(d.live.as_ref().unwrap().value, "2");
    assert_eq!(d.candidate.as_ref().unwrap().value, "two");
    // A third output of `a` has no third input: the last one is named.
    assert_eq!(c.first[1].kind, DiffKind::OnlyCandidate);
    assert_eq!(c.first[1].offset, Some(12));
    assert_eq!(c.first[2].key, None);
    assert_eq!(c.first[2].offset, None);
    let lines = std::fs::read_to_string(file.path()).unwrap();
    assert_eq!(lines.lines().count(), 3);
    let v: serde_json::Value = serde_json::from_str(lines.lines().next().unwrap()).unwrap();
    assert_eq!(v["kind"], "different");
    assert_eq!(v["key"], "a");
    assert_eq!(v["offset"], 12);
}

#[test]
fn timestamps_count_and_timer_firings_are_named() {
    let mut c = Comparator::new(0, None, None);
    let cause = Cause::Timers {
        domain: TimeDomain::EventTime,
        time: 99,
    };
    let live = [batch(&[(Some("k"), "v", 1)])];
    let cand = [batch(&[(Some("k"), "v", 2)])];
    assert_eq!(c.compare(cause, &live, &cand).unwrap(), 1);
    assert_eq!(c.counts.inputs, 0);
    assert_eq!(c.first[0].at, "event-time timers at watermark 99");
    assert_eq!(c.compare(cause, &live, &[]).unwrap(), 1);
    assert_eq!(c.counts.only_live, 1);
}

fn native(name: &str) -> Side {
    let logic = crate::wasm::native::NativeLogic::from_name(name).unwrap();
    let mut ctx = SubtaskCtx::new("op", 0, 8, 0..8);
    ctx.state.declare(&logic.spec().states).unwrap();
    Side::new(Box::new(crate::wasm::native::NativeOperator::new(
        logic, ctx,
    )))
}

#[test]
fn sides_skip_rejected_events_and_go_on_after_them() {
    let mut count = native("keyed-count");
    let input = batch(&[(Some("a"), "x", 1), (None, "bad", 2), (Some("a"), "y", 3)]);
    let out = count.process(&input).unwrap();
    assert_eq!(count.rejected, 1);
    let values: Vec<Vec<u8>> = out
        .iter()
        .flat_map(|b| b.iter().map(|e| e.value.to_vec()).collect::<Vec<_>>())
        .collect();
    assert_eq!(values, vec![b"1".to_vec(), b"2".to_vec()]);
    // A second side on the same input: same output, no difference.
    let mut again = native("keyed-count");
    let mut cmp = Comparator::new(0, None, None);
    let theirs = again.process(&input).unwrap();
    let cause = Cause::Input {
        batch: &input,
        offsets: None,
    };
    assert_eq!(cmp.compare(cause, &out, &theirs).unwrap(), 0);
    // Other logic: every output differs.
    let mut map = native("map");
    let mapped = map.process(&input).unwrap();
    assert_eq!(cmp.compare(cause, &out, &mapped).unwrap(), 3);
    assert_eq!(cmp.counts.different, 2);
    assert_eq!(cmp.counts.only_candidate, 1);
    assert_eq!(
        cmp.first[0].at,
        "event 1 of a batch of 3 from the operator upstream"
    );
}

#[test]
fn keeps_only_the_first_differences() {
    let mut c = Comparator::new(0, None, None);
    let cause = Cause::Timers {
        domain: TimeDomain::ProcessingTime,
        time: 1,
    };
    for i in 0..(DIFFERENCES_KEPT + 5) {
        let live = [batch(&[(Some("k"), &i.to_string(), 0)])];
        c.compare(cause, &live, &[]).unwrap();
    }
    assert_eq!(c.first.len(), DIFFERENCES_KEPT);
    assert_eq!(c.counts.only_live as usize, DIFFERENCES_KEPT + 5);
    assert_eq!(c.first[0].live.as_ref().unwrap().value, "0");
}
