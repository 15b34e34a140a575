//! The pass rule: a gate passes only if it measured at least one case, every case is
//! correct and has a finite ratio, every check passed, the score (geomean of the cases'
//! ratios) reaches the threshold, and no case is below the floor.

use serde::Serialize;

/// What the rule needs to know of one measured case.
#[derive(Debug, Clone, Copy)]
pub struct CaseScore<'a> {
    /// The case's name.
    pub name: &'a str,
    /// Its ratio (speedup, or fraction of copy bandwidth).
    pub ratio: f64,
    /// Whether its result matched the reference.
    pub correct: bool,
}

/// What the rule needs to know of one of the gate's other conditions (fuzzing, per-op
/// thresholds).
#[derive(Debug, Clone, Copy)]
pub struct CheckOutcome<'a> {
    /// The check's name.
    pub name: &'a str,
    /// Whether it passed.
    pub passed: bool,
}

/// The case with the lowest ratio, shown beside the geomean so that one bad shape cannot
/// hide behind a good average.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LowestCase {
    /// The case's name.
    pub name: String,
    /// Its ratio.
    pub ratio: f64,
}

/// The rule's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// Whether the gate passed.
    pub passed: bool,
    /// The geomean of the cases' ratios (0 when there are none).
    pub score: f64,
    /// The lowest case; `None` when there are no cases. A case whose ratio is NaN counts as
    /// the lowest.
    pub lowest: Option<LowestCase>,
    /// Why the gate failed, one line per reason; empty when it passed.
    pub failures: Vec<String>,
}

/// The geometric mean; 0 for no values. Values at or below zero count as 1e-12.
pub fn geomean(values: impl IntoIterator<Item = f64>) -> f64 {
    let (sum, n) = values.into_iter().fold((0.0, 0usize), |(s, n), v| (s + v.max(1e-12).ln(), n + 1));
    if n == 0 {
        0.0
    } else {
        (sum / n as f64).exp()
    }
}

/// Applies the pass rule at `threshold` and `floor` (no floor when `None`).
pub fn judge(threshold: f64, floor: Option<f64>, cases: &[CaseScore<'_>], checks: &[CheckOutcome<'_>]) -> Verdict {
    let mut failures = Vec::new();
    if cases.is_empty() {
        failures.push("no case was measured".to_string());
    }
    for case in cases {
        if !case.correct {
            failures.push(format!("case {} is incorrect", case.name));
        }
        if !case.ratio.is_finite() {
            failures.push(format!("case {} has no finite ratio ({})", case.name, case.ratio));
        } else if let Some(floor) = floor.filter(|floor| case.ratio < *floor) {
            failures.push(format!("case {} is below the floor: {:.3} < {floor:.2}", case.name, case.ratio));
        }
    }
    for check in checks.iter().filter(|c| !c.passed) {
        failures.push(format!("check failed: {}", check.name));
    }
    let score = geomean(cases.iter().map(|c| c.ratio));
    if !cases.is_empty() && (score.is_nan() || score < threshold) {
        failures.push(format!("score {score:.3} is below the threshold {threshold:.2}"));
    }
    let lowest = cases
        .iter()
        .min_by(|a, b| {
            let key = |r: f64| if r.is_nan() { f64::NEG_INFINITY } else { r };
            key(a.ratio).total_cmp(&key(b.ratio))
        })
        .map(|c| LowestCase { name: c.name.to_string(), ratio: c.ratio });
    Verdict { passed: failures.is_empty(), score, lowest, failures }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn case(name: &str, ratio: f64) -> CaseScore<'_> {
        CaseScore { name, ratio, correct: true }
    }

    const GOOD: [CaseScore<'static>; 3] = [
        CaseScore { name: "a", ratio: 0.9, correct: true },
        CaseScore { name: "b", ratio: 1.2, correct: true },
        CaseScore { name: "c", ratio: 0.7, correct: true },
    ];
    const CHECK_OK: CheckOutcome<'static> = CheckOutcome { name: "fuzz", passed: true };

    #[test]
    fn geomean_of_ratios() {
        assert!((geomean([1.0, 4.0]) - 2.0).abs() < 1e-12);
        assert_eq!(geomean(Vec::<f64>::new()), 0.0);
    }

    #[test]
    fn a_good_set_passes_and_names_its_lowest_case() {
        let v = judge(0.8, Some(0.5), &GOOD, &[CHECK_OK]);
        assert!(v.passed, "{:?}", v.failures);
        assert!(v.failures.is_empty());
        assert!((v.score - geomean([0.9, 1.2, 0.7])).abs() < 1e-12);
        assert_eq!(v.lowest, Some(LowestCase { name: "c".into(), ratio: 0.7 }));
        // No floor: the same set passes without one.
        assert!(judge(0.8, None, &GOOD, &[]).passed);
    }

    #[test]
    fn no_case_fails() {
        let v = judge(0.8, None, &[], &[CHECK_OK]);
        assert!(!v.passed);
        assert_eq!(v.lowest, None);
        assert_eq!(v.failures, vec!["no case was measured".to_string()]);
    }

    #[test]
    fn an_incorrect_case_fails() {
        let mut cases = GOOD;
        cases[1].correct = false;
        let v = judge(0.8, None, &cases, &[]);
        assert!(!v.passed);
        assert_eq!(v.failures, vec!["case b is incorrect".to_string()]);
    }

    #[test]
    fn a_failed_check_fails() {
        let v = judge(0.8, None, &GOOD, &[CHECK_OK, CheckOutcome { name: "rmsnorm >= 0.85", passed: false }]);
        assert!(!v.passed);
        assert_eq!(v.failures, vec!["check failed: rmsnorm >= 0.85".to_string()]);
    }

    #[test]
    fn a_case_below_the_floor_fails_whatever_the_geomean() {
        let cases = [case("big", 4.0), case("big2", 4.0), case("cliff", 0.05)];
        let v = judge(0.8, Some(0.5), &cases, &[]);
        assert!(v.score >= 0.8, "the geomean alone would pass: {}", v.score);
        assert!(!v.passed);
        assert_eq!(v.failures, vec!["case cliff is below the floor: 0.050 < 0.50".to_string()]);
        assert_eq!(v.lowest.unwrap().name, "cliff");
        // A case exactly at the floor is not below it.
        assert!(judge(0.8, Some(0.05), &cases, &[]).passed);
    }

    #[test]
    fn a_score_below_the_threshold_fails() {
        let v = judge(0.95, None, &GOOD, &[]);
        assert!(!v.passed);
        assert_eq!(v.failures.len(), 1);
        assert!(v.failures[0].starts_with("score 0.911 is below the threshold 0.95"), "{:?}", v.failures);
    }

    #[test]
    fn a_nan_ratio_fails_and_is_the_lowest() {
        let cases = [case("a", 1.0), case("nan", f64::NAN)];
        let v = judge(0.8, None, &cases, &[]);
        assert!(!v.passed);
        assert_eq!(v.lowest.as_ref().map(|l| l.name.as_str()), Some("nan"));
        assert!(v.failures.iter().any(|f| f.contains("no finite ratio")), "{:?}", v.failures);
    }
}
