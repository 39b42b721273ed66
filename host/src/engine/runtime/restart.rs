//! Restarts after a failure: the delay before each attempt, and what a
//! restart resumes from.

use std::sync::Arc;
use std::time::Duration;

use crate::engine::control::{JobControl, JobState};
use crate::engine::errors::RunError;
use crate::job::{RestartSpec, RestartStrategy};
use crate::state::restore::Restore;
use crate::wasm::operator::OperatorImpl;

use super::attempt::{run_attempt, Wiring};
use super::start::Start;
use super::JobReport;

/// What a restart resumes from, for its message; when it cannot be chosen
/// now (the Kafka cluster that says which checkpoint committed is away), it
/// is chosen again just before the next attempt.
pub(super) fn chosen(choice: Result<String, RunError>, choose_again: &mut bool) -> String {
    match choice {
        Ok(from) => from,
        Err(e) => {
            *choose_again = true;
            format!("the checkpoint to be chosen then (cannot choose it now: {e})")
        }
    }
}

/// How a job restarts after a failure (`[restart]`; none: it does not).
#[derive(Debug, Clone)]
pub(super) struct RestartPolicy(RestartSpec);

impl RestartPolicy {
    /// The job file's `[restart]`, if any.
    pub fn of(spec: Option<&RestartSpec>) -> Self {
        RestartPolicy(spec.cloned().unwrap_or(RestartSpec {
            strategy: RestartStrategy::None,
            attempts: 0,
            delay: Duration::ZERO,
            max_delay: None,
        }))
    }

    /// How many restarts are allowed.
    pub fn max_restarts(&self) -> u32 {
        if self.0.strategy == RestartStrategy::None {
            0
        } else {
            self.0.attempts
        }
    }

    /// The delay before the restart after `attempt` failed attempts
    /// before it (0: the first restart): fixed, or doubling from `delay`
    /// up to `max_delay` (exponential).
    pub fn delay(&self, attempt: u32) -> Duration {
        let r = &self.0;
        let factor = if r.strategy == RestartStrategy::Exponential {
            1u32 << attempt.min(20)
        } else {
            1
        };
        let mut delay = r.delay * factor;
        if let Some(max) = r.max_delay {
            delay = delay.min(max);
        }
        delay
    }
}

/// Runs attempts of the job from `restore` with `loaded` (what the first
/// attempt restores and runs), restarting after failures as `[restart]`
/// says; a swap on probation that fails rolls back without using an
/// attempt, and so does a stop-with-savepoint whose savepoint failed.
pub(super) fn attempts(
    start: &Start<'_>,
    control: &Arc<JobControl>,
    plane: &tokio::runtime::Runtime,
    mut restore: Option<Restore>,
    mut loaded: Vec<OperatorImpl>,
) -> Result<JobReport, RunError> {
    let spec = start.spec;
    let store = &start.store;
    let policy = RestartPolicy::of(spec.restart.as_ref());
    let mut attempt = 0u32;
    // After a failure, the checkpoint to restore is chosen again before the
    // next attempt (an exactly-once Kafka sink asks the cluster which one
    // it committed): a failure to choose, or any setup error of a restart
    // (the broker is still away), fails that attempt, not the job.
    let mut choose_again = false;
    let max_restarts = policy.max_restarts();
    loop {
        let can_restart = attempt < max_restarts && start.replayable;
        control.set_state(JobState::Running);
        let outcome = 'attempt: {
            if choose_again {
                match start.choose(&mut restore, &mut loaded) {
                    Ok(from) => tracing::info!("job `{}` restarts from {from}", spec.name),
                    Err(e) => break 'attempt Err(e),
                }
                choose_again = false;
            }
            let wiring = Wiring {
                spec,
                loaded: &loaded,
                job_loaded: &start.job_loaded,
                components: &start.components,
                store,
                restore: restore.as_ref(),
                attempt,
                wait_all: can_restart,
                control,
                plane,
            };
            run_attempt(wiring)
        };
        let outcome = match outcome {
            Err(RunError::Setup(message)) if attempt > 0 => Err(RunError::Failed(message)),
            other => other,
        };
        // Swaps that passed their probation run on, whatever happens next.
        if let Some(now) = control.current_logic() {
            loaded = now;
        }
        if let Err(RunError::Failed(message)) = &outcome {
            let at_barrier = control.swap_under_way().and_then(|s| s.barrier);
            if let Some(barrier) = at_barrier {
                // The new logic ran, on probation: back to the swap barrier
                // with the old logic, without using a restart attempt.
                control.swap_rolled_back(message);
                if let Some(s) = store.get()? {
                    s.drop_probation()
                        .map_err(|e| RunError::Failed(e.to_string()))?;
                }
                let from = chosen(start.choose(&mut restore, &mut loaded), &mut choose_again);
                tracing::warn!(
                    "job `{}`: the swap at barrier {barrier} rolled back ({message}); the job goes on from {from} with the old logic",
                    spec.name
                );
                continue;
            }
            control.swap_rolled_back(&format!(
                "the job failed before the swap's barrier: {message}"
            ));
        }
        match outcome {
            Ok(report) if report.resume.is_some() => {
                // Not a failure: no restart attempt is used, and there is no delay.
                let from = chosen(start.choose(&mut restore, &mut loaded), &mut choose_again);
                tracing::warn!(
                    "job `{}`: stop-with-savepoint failed ({}); the job resumes from {from}",
                    spec.name,
                    report.resume.as_deref().unwrap_or_default(),
                );
            }
            Ok(report) => break Ok(report),
            Err(RunError::Failed(message)) if can_restart => {
                let delay = policy.delay(attempt);
                attempt += 1;
                control.restarting(attempt, &message);
                let from = chosen(start.choose(&mut restore, &mut loaded), &mut choose_again);
                tracing::warn!(
                    "job `{}` failed: {message}; restart {attempt} of {max_restarts} in {:?} from {from}",
                    spec.name,
                    delay,
                );
                std::thread::sleep(delay);
            }
            Err(RunError::Failed(message)) if max_restarts > 0 => {
                break Err(RunError::Failed(format!(
                    "{message} (gave up after {attempt} restarts)"
                )));
            }
            Err(e) => break Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(
        strategy: RestartStrategy,
        attempts: u32,
        delay_ms: u64,
        max_ms: Option<u64>,
    ) -> RestartPolicy {
        RestartPolicy::of(Some(&RestartSpec {
            strategy,
            attempts,
            delay: Duration::from_millis(delay_ms),
            max_delay: max_ms.map(Duration::from_millis),
        }))
    }

    #[test]
    fn delays_before_each_restart() {
        use RestartStrategy::{Exponential, FixedDelay};
        // (policy, the delays before restarts 1, 2, 3, ... in ms)
        let cases: &[(RestartPolicy, &[u64])] = &[
            (policy(FixedDelay, 3, 500, None), &[500, 500, 500]),
            (
                policy(Exponential, 5, 100, None),
                &[100, 200, 400, 800, 1600],
            ),
            (
                policy(Exponential, 5, 100, Some(300)),
                &[100, 200, 300, 300, 300],
            ),
        ];
        for (p, delays) in cases {
            let got: Vec<u64> = (0..delays.len() as u32)
                .map(|a| p.delay(a).as_millis() as u64)
                .collect();
            assert_eq!(got, *delays, "{p:?}");
        }
        // The doubling stops growing after 20 restarts rather than overflowing.
        let p = policy(Exponential, 100, 1, None);
        assert_eq!(p.delay(40), p.delay(20));
    }

    #[test]
    fn how_many_restarts() {
        assert_eq!(RestartPolicy::of(None).max_restarts(), 0);
        assert_eq!(policy(RestartStrategy::None, 5, 0, None).max_restarts(), 0);
        assert_eq!(
            policy(RestartStrategy::FixedDelay, 5, 0, None).max_restarts(),
            5
        );
    }
}
