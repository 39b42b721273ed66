//! Checkpoint failures in a row, against `[checkpoint] tolerable_failures`
//! (as Flink's `CheckpointFailureManager`): a checkpoint that timed out or
//! whose storage write failed counts one; a completed checkpoint, and every
//! new run, starts the count again; one failure more than tolerated fails
//! the run. Savepoint failures are never counted (the coordinator does not
//! report them here).

/// The count of one run.
#[derive(Debug, Clone, Copy)]
pub struct FailureCount {
    tolerable: u32,
    in_a_row: u32,
}

impl FailureCount {
    /// No failure yet; `tolerable` in a row are tolerated.
    pub fn new(tolerable: u32) -> Self {
        FailureCount {
            tolerable,
            in_a_row: 0,
        }
    }

    /// A checkpoint completed: the count starts again.
    pub fn completed(&mut self) {
        self.in_a_row = 0;
    }

    /// One more checkpoint failure, for `reason`: the line to log while it
    /// is tolerated (`Ok`), or the one-line reason the run fails (`Err`).
    pub fn failed(&mut self, reason: &str) -> Result<String, String> {
        self.in_a_row += 1;
        let n = self.in_a_row;
        let in_a_row = if n == 1 {
            "1 checkpoint failure".to_string()
        } else {
            format!("{n} checkpoint failures in a row")
        };
        if n > self.tolerable {
            return Err(format!(
                "{reason} ({in_a_row}, over `[checkpoint] tolerable_failures` = {})",
                self.tolerable
            ));
        }
        Ok(format!(
            "{reason} ({in_a_row}, `[checkpoint] tolerable_failures` = {}): the job goes on",
            self.tolerable
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `F`: a checkpoint failure, `C`: a completed checkpoint.
    fn outcomes(tolerable: u32, events: &str) -> Vec<bool> {
        let mut count = FailureCount::new(tolerable);
        let mut tolerated = Vec::new();
        for e in events.chars() {
            match e {
                'F' => tolerated.push(count.failed("checkpoint 1 timed out").is_ok()),
                'C' => count.completed(),
                other => panic!("unknown event {other}"),
            }
        }
        tolerated
    }

    #[test]
    fn failures_in_a_row_over_the_tolerated_fail_the_run() {
        let cases: &[(u32, &str, &[bool])] = &[
            // None tolerated: the first failure fails the run.
            (0, "F", &[false]),
            (1, "FF", &[true, false]),
            (2, "FFF", &[true, true, false]),
            // A completed checkpoint starts the count again.
            (1, "FCF", &[true, true]),
            (1, "FCFF", &[true, true, false]),
            (2, "FFCFFCFF", &[true, true, true, true, true, true]),
        ];
        for (tolerable, events, expected) in cases {
            assert_eq!(
                outcomes(*tolerable, events),
                *expected,
                "tolerable {tolerable}, events {events}"
            );
        }
    }

    #[test]
    fn the_reason_says_how_many_and_the_limit() {
        let mut count = FailureCount::new(1);
        assert_eq!(
            count.failed("checkpoint 3 timed out").unwrap(),
            "checkpoint 3 timed out (1 checkpoint failure, `[checkpoint] tolerable_failures` = 1): the job goes on"
        );
        assert_eq!(
            count.failed("checkpoint 4 could not be stored: disk full").unwrap_err(),
            "checkpoint 4 could not be stored: disk full (2 checkpoint failures in a row, over `[checkpoint] tolerable_failures` = 1)"
        );
    }
}
