//! CUDA-event timing: warm-ups, then the median of many runs, candidates interleaved run by
//! run so that clock and thermal drift fall on all of them alike. For problems that fit in
//! L2, the cache is flushed (a memset over twice its size) outside the timed region, or the
//! caller rotates inputs through the run index it is given.

use cudarc::driver::{sys, CudaEvent, CudaSlice, DevicePtrMut};

use crate::error::GpuResult;
use crate::gpu::Gpu;

#[derive(Debug, Clone, Copy)]
pub struct TimingConfig {
    pub warmup: usize,
    /// Lower and upper bounds on timed runs per candidate; the count between them is
    /// chosen so that each candidate gets about `budget_ms` of timed work.
    pub min_reps: usize,
    pub max_reps: usize,
    pub budget_ms: f64,
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
}

#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Stats {
    pub median_us: f64,
    pub min_us: f64,
    pub max_us: f64,
    pub samples: usize,
}

impl Stats {
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

pub struct Timer {
    gpu: Gpu,
    config: TimingConfig,
    flush: Option<CudaSlice<u8>>,
}

impl Timer {
    pub fn new(gpu: &Gpu, config: TimingConfig) -> GpuResult<Timer> {
        let flush = if config.flush_l2 {
            let l2 = gpu.ctx.attribute(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE)? as usize;
            Some(gpu.stream.alloc_zeros::<u8>(2 * l2.max(1 << 20))?)
        } else {
            None
        };
        Ok(Timer { gpu: gpu.clone(), config, flush })
    }

    fn event(&self) -> GpuResult<CudaEvent> {
        // CU_EVENT_DEFAULT: `new_event(None)` disables timing and elapsed_ms then fails.
        Ok(self.gpu.ctx.new_event(Some(sys::CUevent_flags::CU_EVENT_DEFAULT))?)
    }

    fn flush_l2(&mut self) -> GpuResult<()> {
        if let Some(buf) = self.flush.as_mut() {
            let n = cudarc::driver::DeviceSlice::len(buf);
            let (ptr, _sync) = buf.device_ptr_mut(&self.gpu.stream);
            // SAFETY: ptr addresses n bytes on this context.
            unsafe { sys::cuMemsetD8Async(ptr, 0x5A, n, self.gpu.stream.cu_stream()) }.result()?;
        }
        Ok(())
    }

    /// Times one candidate.
    pub fn time(&mut self, candidate: Candidate<'_>) -> GpuResult<Stats> {
        Ok(self.time_interleaved(&mut [candidate])?.remove(0))
    }

    /// Times several candidates on the same stream, alternating run by run.
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
        let reps =
            ((self.config.budget_ms / slowest_ms.max(1e-3)) as usize).clamp(self.config.min_reps, self.config.max_reps);

        let mut events = Vec::with_capacity(reps * candidates.len());
        for rep in 0..reps {
            for candidate in candidates.iter_mut() {
                self.flush_l2()?;
                let (start, end) = (self.event()?, self.event()?);
                start.record(&stream)?;
                candidate(rep)?;
                end.record(&stream)?;
                events.push((start, end));
            }
        }
        stream.synchronize()?;
        let mut samples = vec![Vec::with_capacity(reps); candidates.len()];
        for (k, (start, end)) in events.iter().enumerate() {
            samples[k % candidates.len()].push(start.elapsed_ms(end)? as f64 * 1e3);
        }
        Ok(samples.into_iter().map(Stats::from_samples).collect())
    }
}

/// Device-to-device copy bandwidth in GB/s (bytes read plus bytes written), the ceiling
/// memory-bound cases are measured against.
pub fn copy_bandwidth_gbs(gpu: &Gpu, bytes: usize) -> GpuResult<f64> {
    let src = gpu.random_normal::<f32>(bytes / 4, 0xC0FF)?;
    let mut dst = gpu.zeros::<f32>(bytes / 4)?;
    let mut timer = Timer::new(gpu, TimingConfig { flush_l2: false, ..TimingConfig::default() })?;
    let stats = timer.time(&mut |_| {
        gpu.stream.memcpy_dtod(&src, &mut dst)?;
        Ok(())
    })?;
    Ok(2.0 * bytes as f64 / (stats.median_us * 1e-6) / 1e9)
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
    }
}
