//! GPU fuzzing, shared by every family's fuzzer: proptest draws shapes (and offsets, layouts, scalars), each case runs on the
//! GPU and is checked against the float64 CPU reference (or, for shapes too large for the
//! CPU, against a simple CUDA kernel that is itself checked against the reference). On a
//! failure proptest shrinks to the smallest failing case.

use std::sync::atomic::{AtomicU32, Ordering};

use proptest::strategy::Strategy;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};

use crate::progress::Progress;

#[derive(Debug, Clone)]
pub struct FuzzReport {
    pub op: String,
    pub cases: u32,
    /// The smallest failing case proptest found, with why it failed.
    pub failure: Option<String>,
}

impl FuzzReport {
    pub fn passed(&self) -> bool {
        self.failure.is_none()
    }

    pub fn summary(&self) -> String {
        match &self.failure {
            None => format!("{} cases passed", self.cases),
            Some(f) => format!("failed: {f}"),
        }
    }
}

/// Runs `cases` draws of `strategy` through `check`, which returns Err(description) when the
/// GPU result is wrong.
pub fn fuzz_with<S: Strategy>(
    op: &str,
    cases: u32,
    seed: u64,
    strategy: S,
    check: impl Fn(&S::Value) -> std::result::Result<(), String>,
) -> FuzzReport
where
    S::Value: std::fmt::Debug,
{
    let mut seed_bytes = [0u8; 32];
    seed_bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let config = Config { cases, failure_persistence: None, max_shrink_iters: 64, ..Config::default() };
    let mut runner = TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes));
    let progress = Progress::new(&format!("fuzz {op}"), cases as u64);
    let done = AtomicU32::new(0);
    let result = runner.run(&strategy, |value| {
        let outcome = check(&value);
        if done.load(Ordering::Relaxed) < cases {
            done.fetch_add(1, Ordering::Relaxed);
            progress.step(&format!("{value:?}"));
        }
        outcome.map_err(TestCaseError::fail)
    });
    progress.finish();
    FuzzReport { op: op.to_string(), cases, failure: result.err().map(|e| e.to_string()) }
}
