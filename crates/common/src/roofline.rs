//! The streaming roofline a memory-bound case is scored against: a kernel that moves the
//! same bytes as the case, in the same shape (R input streams read, W output streams
//! written, element `i` of each in the same loop iteration, 16-byte accesses), over random
//! inputs, timed interleaved with the case in the same run.
//!
//! A device-to-device copy reads and writes equal bytes; an add reads twice what it writes,
//! a reduction reads only. Each is measured against a roofline of its own mix: add against
//! `reads = [n, n], writes = [n]`, a full reduction against `reads = [n], writes = [4]`.
//! With no outputs the kernel only reads, which is how [`crate::Timer`] flushes L2 without
//! leaving dirty lines whose write-back would land in the next timed run.

use std::ffi::c_void;

use cudarc::driver::{CudaSlice, DevicePtr, DevicePtrMut};

use crate::error::{check_launch, GpuError, GpuResult};
use crate::gpu::Gpu;
use crate::timing::{gb_per_s, Candidate, Stats, Timer, TimingConfig};

extern "C" {
    fn ckb_roofline_max_streams() -> i32;
    fn ckb_roofline(
        inputs: *const u64,
        input_bytes: *const i64,
        n_in: i32,
        outputs: *const u64,
        output_bytes: *const i64,
        n_out: i32,
        sink: u64,
        sentinel: u32,
        sm_count: i32,
        stream: *mut c_void,
    ) -> i32;
}

/// The most input streams, and the most output streams, one roofline moves.
pub fn max_streams() -> usize {
    // SAFETY: returns a constant.
    unsafe { ckb_roofline_max_streams() }.max(0) as usize
}

/// A value the XOR of everything read is compared with (a write to the sink only when equal
/// keeps the loads from being optimized away); any value works.
const SENTINEL: u32 = 0x9E37_79B9;

/// The 16-byte pattern the roofline mixes into vector `i` of every output (as four
/// little-endian u32 words), so that outputs differ even with no inputs.
pub fn index_vector(i: u64) -> [u32; 4] {
    [i as u32, (i >> 32) as u32, 0x9E37_79B9, 0x7F4A_7C15]
}

/// The streams of one roofline, checked: byte sizes of the inputs and outputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RooflineShape {
    /// Bytes of each input stream.
    pub reads: Vec<usize>,
    /// Bytes of each output stream.
    pub writes: Vec<usize>,
}

impl RooflineShape {
    /// Checks the stream counts (at most [`max_streams`] each, at least one stream in all)
    /// and sizes (none empty, each within `i64`).
    pub fn new(reads: &[usize], writes: &[usize], max_streams: usize) -> GpuResult<RooflineShape> {
        let invalid = |detail: String| GpuError::InvalidShape { what: "roofline", detail };
        if reads.len() > max_streams || writes.len() > max_streams {
            return Err(invalid(format!(
                "{} inputs and {} outputs: at most {max_streams} of each",
                reads.len(),
                writes.len()
            )));
        }
        if reads.is_empty() && writes.is_empty() {
            return Err(invalid("no streams to move".into()));
        }
        if let Some(bad) = reads.iter().chain(writes).find(|&&b| b == 0 || i64::try_from(b).is_err()) {
            return Err(invalid(format!("a stream of {bad} bytes (each needs 1 to i64::MAX)")));
        }
        Ok(RooflineShape { reads: reads.to_vec(), writes: writes.to_vec() })
    }

    /// Bytes moved by one run: everything read plus everything written.
    pub fn bytes(&self) -> usize {
        self.reads.iter().chain(&self.writes).sum()
    }
}

/// Device buffers for one roofline, set up once; [`Roofline::run`] only launches.
pub struct Roofline {
    gpu: Gpu,
    shape: RooflineShape,
    // f32 so that the inputs can hold random normals; each is a whole number of 16-byte
    // vectors at least as long as its stream.
    inputs: Vec<CudaSlice<f32>>,
    outputs: Vec<CudaSlice<f32>>,
    sink: CudaSlice<u32>,
}

impl Roofline {
    /// Allocates the streams (inputs filled with random normals on the GPU, outputs zeroed).
    pub fn new(gpu: &Gpu, reads: &[usize], writes: &[usize]) -> GpuResult<Roofline> {
        let shape = RooflineShape::new(reads, writes, max_streams())?;
        let floats = |bytes: usize| bytes.div_ceil(16) * 4;
        let inputs = shape
            .reads
            .iter()
            .enumerate()
            .map(|(k, &bytes)| gpu.random_normal_on_device::<f32>(floats(bytes), 0x500F + k as u64))
            .collect::<GpuResult<Vec<_>>>()?;
        let outputs = shape.writes.iter().map(|&bytes| gpu.zeros::<f32>(floats(bytes))).collect::<GpuResult<_>>()?;
        let sink = gpu.stream.alloc_zeros::<u32>(1)?;
        Ok(Roofline { gpu: gpu.clone(), shape, inputs, outputs, sink })
    }

    /// The streams this roofline moves.
    pub fn shape(&self) -> &RooflineShape {
        &self.shape
    }

    /// The input streams' buffers (each rounded up to whole 16-byte vectors).
    pub fn inputs(&self) -> &[CudaSlice<f32>] {
        &self.inputs
    }

    /// The output streams' buffers (each rounded up to whole 16-byte vectors; bytes past
    /// the stream's size are never written). Vector `i` of each output is the XOR of vector
    /// `i` of every input that has one, and of [`index_vector`]`(i)`.
    pub fn outputs(&self) -> &[CudaSlice<f32>] {
        &self.outputs
    }

    /// Enqueues one pass over every stream on the GPU's stream.
    pub fn run(&mut self) -> GpuResult<()> {
        self.gpu.ctx.bind_to_thread()?;
        let stream = &self.gpu.stream;
        let (inputs, _read_guards): (Vec<u64>, Vec<_>) = self.inputs.iter().map(|b| b.device_ptr(stream)).unzip();
        let (outputs, _write_guards): (Vec<u64>, Vec<_>) =
            self.outputs.iter_mut().map(|b| b.device_ptr_mut(stream)).unzip();
        let (sink, _sink_guard) = self.sink.device_ptr_mut(stream);
        // Checked to fit by RooflineShape::new.
        let input_bytes: Vec<i64> = self.shape.reads.iter().map(|&b| b as i64).collect();
        let output_bytes: Vec<i64> = self.shape.writes.iter().map(|&b| b as i64).collect();
        // SAFETY: each address holds at least its stream's bytes (rounded up to 16) on this
        // context, allocations are 256-byte aligned, the counts are within max_streams, and
        // the guards live until the launch is enqueued.
        let code = unsafe {
            ckb_roofline(
                inputs.as_ptr(),
                input_bytes.as_ptr(),
                inputs.len() as i32,
                outputs.as_ptr(),
                output_bytes.as_ptr(),
                outputs.len() as i32,
                sink,
                SENTINEL,
                self.gpu.sm_count() as i32,
                self.gpu.cu_stream(),
            )
        };
        check_launch("roofline", code)
    }
}

/// A case timed against its roofline in the same run.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct RooflineTiming {
    /// Our candidate.
    pub ours: Stats,
    /// The roofline moving the same bytes.
    pub roofline: Stats,
    /// Bytes one run of either moves.
    pub bytes: usize,
}

impl RooflineTiming {
    /// The roofline's median time over ours: the fraction of the streaming rate these bytes
    /// allow that ours reached (1.0: as fast as the roofline).
    pub fn ratio(&self) -> f64 {
        self.roofline.median_us / self.ours.median_us
    }

    /// Our rate in GB/s, from the median.
    pub fn ours_gbs(&self) -> f64 {
        gb_per_s(self.bytes, self.ours.median_us)
    }

    /// The roofline's rate in GB/s, from the median.
    pub fn roofline_gbs(&self) -> f64 {
        gb_per_s(self.bytes, self.roofline.median_us)
    }
}

/// Times `ours` interleaved with a [`Roofline`] that reads `reads` and writes `writes`
/// (bytes per stream), with the default [`TimingConfig`] (L2 flushed between runs).
pub fn time_against_roofline(
    gpu: &Gpu,
    reads: &[usize],
    writes: &[usize],
    ours: Candidate<'_>,
) -> GpuResult<RooflineTiming> {
    time_against_roofline_with(gpu, TimingConfig::default(), reads, writes, ours)
}

/// [`time_against_roofline`] with a chosen timing configuration.
pub fn time_against_roofline_with(
    gpu: &Gpu,
    config: TimingConfig,
    reads: &[usize],
    writes: &[usize],
    ours: Candidate<'_>,
) -> GpuResult<RooflineTiming> {
    let mut roofline = Roofline::new(gpu, reads, writes)?;
    let bytes = roofline.shape().bytes();
    let mut timer = Timer::new(gpu, config)?;
    let stats = timer.time_interleaved(&mut [ours, &mut |_| roofline.run()])?;
    Ok(RooflineTiming { ours: stats[0], roofline: stats[1], bytes })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_are_checked() {
        let shape = RooflineShape::new(&[100, 100], &[100], 4).unwrap();
        assert_eq!(shape.bytes(), 300);
        assert_eq!(RooflineShape::new(&[64], &[], 4).unwrap().bytes(), 64);
        assert_eq!(RooflineShape::new(&[], &[8], 4).unwrap().bytes(), 8);
        for (reads, writes) in [(&[][..], &[][..]), (&[1, 2, 3, 4, 5][..], &[1][..]), (&[1][..], &[0][..])] {
            assert!(
                matches!(RooflineShape::new(reads, writes, 4), Err(GpuError::InvalidShape { what: "roofline", .. })),
                "{reads:?} {writes:?}"
            );
        }
        assert!(RooflineShape::new(&[usize::MAX], &[], 4).is_err());
    }

    #[test]
    fn timing_ratio_and_rates_come_from_the_medians() {
        let stats = |us| Stats::from_samples(vec![us]);
        let t = RooflineTiming { ours: stats(200.0), roofline: stats(150.0), bytes: 3_000_000 };
        assert_eq!(t.ratio(), 0.75);
        assert!((t.ours_gbs() - 15.0).abs() < 1e-12);
        assert!((t.roofline_gbs() - 20.0).abs() < 1e-12);
    }
}
