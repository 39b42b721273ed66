//! The coordinator as a whole, driven the way a run drives it: the test
//! plays the source, the sink and the control plane over the coordinator's
//! own channels, with a real checkpoint store in a temporary directory.

use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};

use super::*;
use crate::engine::control::{JobState, SavepointState};
use crate::model::{SourcePosition, SourceState};

/// The stages' and the control plane's side of a coordinator that runs on
/// a thread of its own.
struct Stages {
    acks: Sender<Ack>,
    triggers: Receiver<Trigger>,
    commits: Receiver<SinkNotice>,
    control: Arc<JobControl>,
    _cancel: Sender<()>,
    run: JoinHandle<Result<CoordinatorEnd, String>>,
}

/// Checkpoints every `interval` into `dir` (none: the job takes no
/// checkpoints), for a job of one source subtask, no operator and a sink.
fn start(
    dir: Option<&Path>,
    interval: Option<Duration>,
    timeout: Duration,
    tolerable: u32,
) -> Stages {
    let (ack_tx, ack_rx) = crossbeam_channel::unbounded();
    let (trigger_tx, trigger_rx) = crossbeam_channel::bounded(4);
    let (commit_tx, commit_rx) = crossbeam_channel::unbounded();
    let (cancel_tx, cancel_rx) = crossbeam_channel::bounded(1);
    let control = Arc::new(JobControl::new(
        "job",
        Vec::new(),
        Path::new("/"),
        None,
        true,
    ));
    control.set_state(JobState::Running);
    let store = dir.map(|d| CheckpointStore::open(d).unwrap());
    let coordinator = Coordinator {
        store,
        job: "job".to_string(),
        max_parallelism: 128,
        operators: RefCell::new(Vec::new()),
        interval,
        retain: 3,
        publishing: RefCell::new(PublishQueue::new(0)),
        sink_commit: None,
        parent_chain: Vec::new(),
        acks: ack_rx,
        triggers: vec![trigger_tx],
        source_completions: Vec::new(),
        commits: commit_tx,
        cancel: cancel_rx,
        control: control.clone(),
        first_id: 1,
        timeout,
        tolerable_failures: tolerable,
        swaps: Arc::default(),
        swap: RefCell::default(),
    };
    let run = std::thread::spawn(move || coordinator.run());
    Stages {
        acks: ack_tx,
        triggers: trigger_rx,
        commits: commit_rx,
        control,
        _cancel: cancel_tx,
        run,
    }
}

impl Stages {
    /// The next barrier the source is asked to inject.
    fn barrier(&self) -> Barrier {
        self.triggers
            .recv()
            .expect("the coordinator triggers")
            .barrier
    }

    /// The source and the sink acknowledge barrier `id`.
    fn ack(&self, id: u64) {
        let state = Some(SourceState {
            position: SourcePosition::Generator { next: id * 10 },
            max_timestamp: 0,
        });
        self.acks
            .send(Ack::Source {
                id,
                subtask: 0,
                state,
            })
            .unwrap();
        self.acks.send(Ack::Sink { id, state: None }).unwrap();
    }

    /// What the coordinator tells the sink next; the sink commits what a
    /// completed checkpoint covers.
    fn notice(&self) -> SinkNotice {
        let notice = self.commits.recv().expect("the coordinator tells the sink");
        if let SinkNotice::Complete(id) = notice {
            self.acks.send(Ack::Committed { id }).unwrap();
        }
        notice
    }

    fn end(self) -> Result<CoordinatorEnd, String> {
        drop(self.acks);
        self.run.join().unwrap()
    }
}

fn completed(dir: &Path) -> Vec<u64> {
    let store = CheckpointStore::open(dir).unwrap();
    store.list().unwrap().iter().map(|m| m.id).collect()
}

#[test]
fn checkpoints_that_time_out_fail_the_run_once_over_the_tolerated() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(
        Some(dir.path()),
        Some(Duration::from_millis(10)),
        Duration::from_millis(50),
        1,
    );
    // Nothing acknowledges: each checkpoint times out and is aborted.
    assert_eq!(s.barrier().id, 1);
    assert_eq!(s.notice(), SinkNotice::Aborted(1));
    assert_eq!(s.barrier().id, 2);
    assert_eq!(s.notice(), SinkNotice::Aborted(2));
    let e = s.run.join().unwrap().err().expect("the run fails");
    assert_eq!(
        e,
        "checkpoint 2 timed out after 50ms (`[checkpoint] timeout`) waiting for the source, the sink (2 checkpoint failures in a row, over `[checkpoint] tolerable_failures` = 1)"
    );
    assert!(completed(dir.path()).is_empty());
}

#[test]
fn late_acknowledgements_of_an_aborted_checkpoint_count_for_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(
        Some(dir.path()),
        Some(Duration::from_millis(10)),
        Duration::from_millis(100),
        5,
    );
    assert_eq!(s.barrier().id, 1);
    assert_eq!(s.notice(), SinkNotice::Aborted(1));
    let failed = s.control.status().last_failed_checkpoint;
    assert_eq!(failed.map(|f| f.id), Some(1));
    // Barrier 1's acknowledgements arrive late, then the next barrier's (on
    // a loaded machine that one may time out too: then the next).
    let done = loop {
        let barrier = s.barrier();
        assert!(barrier.full, "the checkpoint after an aborted one is full");
        s.ack(1);
        s.ack(barrier.id);
        match s.notice() {
            SinkNotice::Complete(id) => {
                assert_eq!(id, barrier.id);
                break id;
            }
            SinkNotice::Aborted(id) => assert_eq!(id, barrier.id),
        }
    };
    s.end().unwrap();
    assert_eq!(completed(dir.path()), [done]);
}

#[test]
fn a_savepoint_completes_only_once_the_sink_has_committed() {
    let dir = tempfile::tempdir().unwrap();
    let target = tempfile::tempdir().unwrap();
    let s = start(Some(dir.path()), None, Duration::from_secs(600), 0);
    let request = s
        .control
        .request_savepoint(Some(target.path().to_str().unwrap()), None)
        .unwrap();
    let barrier = s.barrier();
    assert!(barrier.full && !barrier.last);
    s.ack(barrier.id);
    let notice = s.commits.recv().unwrap();
    assert_eq!(notice, SinkNotice::Complete(barrier.id));
    // Written, but its output is not committed yet.
    assert_eq!(
        s.control.savepoint(&request).unwrap().status,
        SavepointState::InProgress
    );
    s.acks.send(Ack::Committed { id: barrier.id }).unwrap();
    let status = loop {
        let status = s.control.savepoint(&request).unwrap();
        if status.status != SavepointState::InProgress {
            break status;
        }
        std::thread::yield_now();
    };
    assert_eq!(status.status, SavepointState::Completed, "{status:?}");
    let location = status.location.unwrap();
    assert!(Path::new(&location).join("_metadata").is_file());
    s.end().unwrap();
}

#[test]
fn a_stop_whose_savepoint_cannot_be_written_resumes_from_its_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let target = tempfile::tempdir().unwrap();
    let s = start(Some(dir.path()), None, Duration::from_secs(600), 0);
    let request = s
        .control
        .request_savepoint(Some(target.path().to_str().unwrap()), Some(false))
        .unwrap();
    let barrier = s.barrier();
    assert!(barrier.last && barrier.stop);
    // The savepoint's directory goes away before its manifest is written.
    for entry in std::fs::read_dir(target.path()).unwrap() {
        std::fs::remove_dir_all(entry.unwrap().path()).unwrap();
    }
    s.ack(barrier.id);
    assert_eq!(s.notice(), SinkNotice::Complete(barrier.id));
    let control = s.control.clone();
    match s.run.join().unwrap() {
        Ok(CoordinatorEnd::Resume(why)) => assert!(why.contains("_metadata"), "{why}"),
        Ok(_) => panic!("the run ended otherwise"),
        Err(e) => panic!("the run failed: {e}"),
    }
    assert_eq!(
        control.savepoint(&request).unwrap().status,
        SavepointState::Failed
    );
    // The checkpoint the stop's barrier completed is there to resume from.
    assert_eq!(completed(dir.path()), [barrier.id]);
}

#[test]
fn without_checkpoints_only_the_final_barrier_is_taken_and_it_never_times_out() {
    // A timeout of zero would abort any barrier that has one at once.
    let s = start(None, None, Duration::ZERO, 0);
    s.acks.send(Ack::EndOfInput).unwrap();
    let barrier = s.barrier();
    assert!(barrier.last);
    s.ack(barrier.id);
    assert_eq!(s.notice(), SinkNotice::Complete(barrier.id));
    assert!(matches!(
        s.run.join().unwrap(),
        Ok(CoordinatorEnd::Finished)
    ));
}
