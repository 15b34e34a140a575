//! CUDA-event timing: warm-ups, then the median of many runs, candidates interleaved run by
//! run so that clock and thermal drift fall on all of them alike. For problems that fit in
//! L2, the cache is flushed outside the timed region (a read-only pass over twice its size,
//! [`crate::roofline`], which leaves clean lines: no write-back lands in the next timed run),
//! or the caller rotates inputs through the run index it is given.
//!
//! The pure parts (how many runs, in which order, whose sample is whose, the statistics)
//! are functions of their own, tested without a GPU.

use cudarc::driver::{sys, CudaEvent};

use crate::error::GpuResult;
use crate::gpu::Gpu;
use crate::roofline::Roofline;

/// How a [`Timer`] runs its candidates.
#[derive(Debug, Clone, Copy)]
pub struct TimingConfig {
    /// Untimed runs of each candidate before the first estimate.
    pub warmup: usize,
    /// Lower and upper bounds on timed runs per candidate; the count between them is
    /// chosen so that each candidate gets about `budget_ms` of timed work.
    pub min_reps: usize,
    /// See `min_reps`.
    pub max_reps: usize,
    /// Timed work per candidate the run count aims at, in milliseconds.
    pub budget_ms: f64,
    /// Flush L2 (read twice its size) before every timed run.
    pub flush_l2: bool,
}

impl Default for TimingConfig {
    fn default() -> Self {
        TimingConfig { warmup: 5, min_reps: 20, max_reps: 200, budget_ms: 300.0, flush_l2: true }
    }
}

impl TimingConfig {
    /// Few runs, for smoke tests.
    pub fn quick() -> Self {
        TimingConfig { warmup: 1, min_reps: 3, max_reps: 5, budget_ms: 10.0, flush_l2: false }
    }

    /// Timed runs per candidate when the slowest candidate's first run took `slowest_ms`:
    /// about `budget_ms` of work, within `[min_reps, max_reps]` (at least one run; a
    /// `max_reps` below `min_reps` counts as `min_reps`; an unmeasurably fast candidate
    /// counts as 1 us).
    pub fn rep_count(&self, slowest_ms: f64) -> usize {
        let min = self.min_reps.max(1);
        let max = self.max_reps.max(min);
        // `as` saturates: NaN and negatives give 0, infinities usize::MAX.
        ((self.budget_ms / slowest_ms.max(1e-3)) as usize).clamp(min, max)
    }
}

/// The timed runs in launch order, as (run index, candidate): run by run, and within a run
/// candidate by candidate, so that neighbouring samples of different candidates are
/// at most one run apart.
pub fn schedule(reps: usize, candidates: usize) -> Vec<(usize, usize)> {
    (0..reps).flat_map(|rep| (0..candidates).map(move |c| (rep, c))).collect()
}

/// Each candidate's samples, given the samples of [`schedule`]'s runs in its order.
pub fn samples_by_candidate(schedule: &[(usize, usize)], samples: &[f64], candidates: usize) -> Vec<Vec<f64>> {
    let mut out = vec![Vec::with_capacity(schedule.len() / candidates.max(1)); candidates];
    for (&(_, c), &sample) in schedule.iter().zip(samples) {
        out[c].push(sample);
    }
    out
}

/// Bytes over microseconds, in GB/s (10^9 bytes per second).
pub fn gb_per_s(bytes: usize, us: f64) -> f64 {
    bytes as f64 / (us * 1e-6) / 1e9
}

/// A candidate's timed runs, summarized.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Stats {
    /// The median (the mean of the middle two for an even count); NaN with no samples.
    pub median_us: f64,
    /// The fastest run.
    pub min_us: f64,
    /// The slowest run.
    pub max_us: f64,
    /// Runs timed.
    pub samples: usize,
}

impl Stats {
    /// Summarizes samples in microseconds (NaNs sort above every number).
    pub fn from_samples(mut us: Vec<f64>) -> Stats {
        us.sort_by(|a, b| a.total_cmp(b));
        let n = us.len();
        let median = if n == 0 {
            f64::NAN
        } else if n % 2 == 1 {
            us[n / 2]
        } else {
            0.5 * (us[n / 2 - 1] + us[n / 2])
        };
        Stats {
            median_us: median,
            min_us: *us.first().unwrap_or(&f64::NAN),
            max_us: *us.last().unwrap_or(&f64::NAN),
            samples: n,
        }
    }
}

/// One timed thing: gets the run index (to rotate inputs) and enqueues its work on the stream.
pub type Candidate<'a> = &'a mut dyn FnMut(usize) -> GpuResult<()>;

/// Times candidates on one GPU's stream with CUDA events.
pub struct Timer {
    gpu: Gpu,
    config: TimingConfig,
    flush: Option<Roofline>,
}

impl Timer {
    /// A timer with `config`; with `flush_l2`, sets up the flush (twice the L2 size).
    pub fn new(gpu: &Gpu, config: TimingConfig) -> GpuResult<Timer> {
        let flush = if config.flush_l2 {
            let l2 = gpu.ctx.attribute(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE)? as usize;
            Some(Roofline::new(gpu, &[2 * l2.max(1 << 20)], &[])?)
        } else {
            None
        };
        Ok(Timer { gpu: gpu.clone(), config, flush })
    }

    fn event(&self) -> GpuResult<CudaEvent> {
        // CU_EVENT_DEFAULT: `new_event(None)` disables timing and elapsed_ms then fails.
        Ok(self.gpu.ctx.new_event(Some(sys::CUevent_flags::CU_EVENT_DEFAULT))?)
    }

    /// Evicts L2 by reading the flush buffer: lines it leaves are clean, and the dirty lines
    /// of the last run are written back now, outside the timed region.
    fn flush_l2(&mut self) -> GpuResult<()> {
        match self.flush.as_mut() {
            Some(flush) => flush.run(),
            None => Ok(()),
        }
    }

    /// Times one candidate.
    pub fn time(&mut self, candidate: Candidate<'_>) -> GpuResult<Stats> {
        Ok(self.time_interleaved(&mut [candidate])?.remove(0))
    }

    /// Times several candidates on the same stream, alternating run by run ([`schedule`]).
    pub fn time_interleaved(&mut self, candidates: &mut [Candidate<'_>]) -> GpuResult<Vec<Stats>> {
        let stream = self.gpu.stream.clone();
        // Warm-up, and a first estimate of the slowest candidate's time to size the run count.
        let mut slowest_ms = 0.0f64;
        for (c, candidate) in candidates.iter_mut().enumerate() {
            for i in 0..self.config.warmup.max(1) {
                candidate(i + c)?;
            }
            let (start, end) = (self.event()?, self.event()?);
            start.record(&stream)?;
            candidate(0)?;
            end.record(&stream)?;
            end.synchronize()?;
            slowest_ms = slowest_ms.max(start.elapsed_ms(&end)? as f64);
        }
        let order = schedule(self.config.rep_count(slowest_ms), candidates.len());
        // Made up front, so that the host work between enqueued runs is only the launches.
        let events = (0..order.len()).map(|_| Ok((self.event()?, self.event()?))).collect::<GpuResult<Vec<_>>>()?;
        for (&(rep, c), (start, end)) in order.iter().zip(&events) {
            self.flush_l2()?;
            start.record(&stream)?;
            candidates[c](rep)?;
            end.record(&stream)?;
        }
        stream.synchronize()?;
        let samples =
            events.iter().map(|(start, end)| Ok(start.elapsed_ms(end)? as f64 * 1e3)).collect::<GpuResult<Vec<_>>>()?;
        Ok(samples_by_candidate(&order, &samples, candidates.len()).into_iter().map(Stats::from_samples).collect())
    }
}

/// Device-to-device copy bandwidth in GB/s (bytes read plus bytes written) of a `bytes`
/// copy from random normals, the ceiling memory-bound cases are reported against.
pub fn copy_bandwidth_gbs(gpu: &Gpu, bytes: usize) -> GpuResult<f64> {
    let src = gpu.random_normal_on_device::<f32>(bytes / 4, 0xC0FF)?;
    let mut dst = gpu.zeros::<f32>(bytes / 4)?;
    let mut timer = Timer::new(gpu, TimingConfig { flush_l2: false, ..TimingConfig::default() })?;
    let stats = timer.time(&mut |_| {
        gpu.stream.memcpy_dtod(&src, &mut dst)?;
        Ok(())
    })?;
    Ok(gb_per_s(2 * (bytes / 4 * 4), stats.median_us))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_samples() {
        assert_eq!(Stats::from_samples(vec![3.0, 1.0, 2.0]).median_us, 2.0);
        assert_eq!(Stats::from_samples(vec![4.0, 1.0, 2.0, 3.0]).median_us, 2.5);
        let s = Stats::from_samples(vec![5.0, 1.0]);
        assert_eq!((s.min_us, s.max_us, s.samples), (1.0, 5.0, 2));
        let empty = Stats::from_samples(Vec::new());
        assert!(empty.median_us.is_nan() && empty.min_us.is_nan() && empty.max_us.is_nan());
        assert_eq!(empty.samples, 0);
        // A NaN sample sorts last: it can be the max, never the min.
        let with_nan = Stats::from_samples(vec![2.0, f64::NAN, 1.0]);
        assert_eq!((with_nan.min_us, with_nan.median_us), (1.0, 2.0));
        assert!(with_nan.max_us.is_nan());
    }

    fn config(min_reps: usize, max_reps: usize, budget_ms: f64) -> TimingConfig {
        TimingConfig { warmup: 1, min_reps, max_reps, budget_ms, flush_l2: false }
    }

    #[test]
    fn rep_count_spends_the_budget_within_bounds() {
        let c = config(20, 200, 300.0);
        assert_eq!(c.rep_count(2.0), 150);
        assert_eq!(c.rep_count(3.0), 100);
        assert_eq!(c.rep_count(0.5), 200, "capped at max_reps");
        assert_eq!(c.rep_count(100.0), 20, "raised to min_reps");
        assert_eq!(c.rep_count(0.0), 200, "an unmeasurable run counts as 1 us");
        assert_eq!(c.rep_count(f64::NAN), 200, "as does a NaN estimate");
        assert_eq!(c.rep_count(f64::INFINITY), 20);
        assert_eq!(config(0, 0, 10.0).rep_count(1.0), 1, "at least one run");
        assert_eq!(config(30, 10, 1e6).rep_count(1.0), 30, "max below min counts as min");
        assert_eq!(config(5, 50, -1.0).rep_count(1.0), 5);
        assert_eq!(TimingConfig::quick().rep_count(1.0), 5);
    }

    #[test]
    fn schedule_alternates_candidates_run_by_run() {
        assert_eq!(schedule(3, 2), vec![(0, 0), (0, 1), (1, 0), (1, 1), (2, 0), (2, 1)]);
        assert_eq!(schedule(2, 3), vec![(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]);
        assert!(schedule(0, 2).is_empty());
        assert_eq!(schedule(4, 1), vec![(0, 0), (1, 0), (2, 0), (3, 0)]);
    }

    #[test]
    fn samples_go_to_the_candidate_that_ran() {
        let order = schedule(3, 2);
        let samples = [10.0, 20.0, 11.0, 21.0, 12.0, 22.0];
        assert_eq!(samples_by_candidate(&order, &samples, 2), vec![vec![10.0, 11.0, 12.0], vec![20.0, 21.0, 22.0]]);
        let order = [(0, 1), (0, 0), (1, 1)];
        assert_eq!(samples_by_candidate(&order, &[1.0, 2.0, 3.0], 2), vec![vec![2.0], vec![1.0, 3.0]]);
        assert_eq!(samples_by_candidate(&[], &[], 3), vec![Vec::<f64>::new(); 3]);
    }

    #[test]
    fn rates_are_decimal_gigabytes_per_second() {
        assert_eq!(gb_per_s(4_000_000_000, 1e6), 4.0);
        assert!((gb_per_s(3_000, 1.0) - 3.0).abs() < 1e-12);
    }
}
