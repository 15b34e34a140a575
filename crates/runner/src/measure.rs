//! The measuring every operator family shares: ours against a vendor call or a roofline,
//! interleaved run by run on the same stream and inputs; the case records those runs make;
//! and the memory check a case makes before it allocates.

use anyhow::{bail, Result};
use ckb_common::roofline::Roofline;
use ckb_common::timing::Candidate;
use ckb_common::{Comparison, Gpu, Timer, TimingConfig};

use crate::record::CaseResult;

/// What every measurement runs with: the GPU and the copy bandwidth measured at the start of
/// this run (GB/s, bytes read plus written), the ceiling of memory-bound cases.
pub struct Context {
    pub gpu: Gpu,
    pub copy_gbs: f64,
}

/// Bytes for the copy-bandwidth ceiling: large enough that L2 plays no part.
pub const COPY_PROBE_BYTES: usize = 1 << 30;

impl Context {
    /// Opens GPU `device` and measures its copy bandwidth.
    pub fn open(device: usize) -> Result<Context> {
        let gpu = Gpu::new(device)?;
        let copy_gbs = ckb_common::copy_bandwidth_gbs(&gpu, COPY_PROBE_BYTES)?;
        tracing::info!("copy bandwidth: {copy_gbs:.0} GB/s");
        Ok(Context { gpu, copy_gbs })
    }
}

/// Median times of `ours` and `theirs` (microseconds), timed interleaved.
pub fn against_vendor(gpu: &Gpu, ours: Candidate<'_>, theirs: Candidate<'_>) -> Result<(f64, f64)> {
    let mut timer = Timer::new(gpu, TimingConfig::default())?;
    let stats = timer.time_interleaved(&mut [ours, theirs])?;
    Ok((stats[0].median_us, stats[1].median_us))
}

/// The bytes a memory-bound case moves, stream by stream: what its roofline reads and
/// writes (an add reads two streams and writes one; a full reduction reads one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Traffic {
    /// Bytes of each stream read.
    pub reads: Vec<usize>,
    /// Bytes of each stream written.
    pub writes: Vec<usize>,
}

impl Traffic {
    /// Streams of `reads` and `writes` bytes; empty (zero-byte) streams are left out.
    pub fn new(reads: &[usize], writes: &[usize]) -> Traffic {
        let nonzero = |v: &[usize]| v.iter().copied().filter(|&b| b > 0).collect();
        Traffic { reads: nonzero(reads), writes: nonzero(writes) }
    }

    /// Every byte read or written.
    pub fn bytes(&self) -> usize {
        self.reads.iter().chain(&self.writes).sum()
    }
}

/// Median times of `ours` and of the memory roofline of `traffic`, timed interleaved. The
/// roofline is the faster of two baselines moving the same bytes from random inputs: the
/// streaming kernel of the case's own read/write mix ([`ckb_common::roofline`]; an add
/// reads two streams and writes one) and a device-to-device copy (half read, half
/// written), which the streaming kernel does not yet match on the H200.
pub fn against_roofline(gpu: &Gpu, traffic: &Traffic, ours: Candidate<'_>) -> Result<(f64, f64)> {
    let (ours_us, roofline_us, _) = against_roofline_and(gpu, traffic, ours, None)?;
    Ok((ours_us, roofline_us))
}

/// As [`against_roofline`], with a vendor call timed in the same interleaved rotation
/// (cuDNN's softmax beside the roofline); returns the three medians.
pub fn against_roofline_and(
    gpu: &Gpu,
    traffic: &Traffic,
    ours: Candidate<'_>,
    vendor: Option<Candidate<'_>>,
) -> Result<(f64, f64, Option<f64>)> {
    let mut streaming = Roofline::new(gpu, &traffic.reads, &traffic.writes)?;
    let mut streaming_run = |_| streaming.run();
    let words = (traffic.bytes() / 2).div_ceil(4);
    let src = gpu.random_normal_on_device::<f32>(words, 0xC0)?;
    let mut dst = gpu.zeros::<f32>(words)?;
    let mut copy = |_| Ok(gpu.stream.memcpy_dtod(&src, &mut dst)?);
    let mut timer = Timer::new(gpu, TimingConfig::default())?;
    let stats = match vendor {
        Some(v) => timer.time_interleaved(&mut [ours, &mut streaming_run, &mut copy, v])?,
        None => timer.time_interleaved(&mut [ours, &mut streaming_run, &mut copy])?,
    };
    let (streaming_us, copy_us) = (stats[1].median_us, stats[2].median_us);
    tracing::debug!("roofline: streaming kernel {streaming_us:.1} us, copy {copy_us:.1} us");
    Ok((stats[0].median_us, streaming_us.min(copy_us), stats.get(3).map(|s| s.median_us)))
}

/// A speedup case: the ratio is the baseline's time over ours.
pub fn speedup_case(name: String, variant: String, ours_us: f64, baseline_us: f64, check: Comparison) -> CaseResult {
    CaseResult {
        name,
        variant,
        ours_us,
        baseline_us: Some(baseline_us),
        ratio: baseline_us / ours_us,
        correct: check.passed,
        rel_err: check.rel_err,
        ..CaseResult::default()
    }
}

/// A memory-bound case scored against a roofline measured in the same run (`baseline_us`
/// moves the same bytes): the ratio is the roofline's time over ours, and the case also
/// reports GB/s and its fraction of the run's copy bandwidth.
pub fn streaming_case(
    name: String,
    variant: String,
    bytes: usize,
    ours_us: f64,
    baseline_us: f64,
    copy_gbs: f64,
    check: Comparison,
) -> CaseResult {
    let gbs = bytes as f64 / (ours_us * 1e-6) / 1e9;
    CaseResult {
        gbs: Some(gbs),
        fraction_of_copy: Some(gbs / copy_gbs),
        ..speedup_case(name, variant, ours_us, baseline_us, check)
    }
}

/// Fails with a one-line error unless `bytes` of new buffers fit in the GPU's free memory
/// (with a margin for the baselines' workspaces and the L2 flush buffer).
pub fn ensure_fits(gpu: &Gpu, what: &str, bytes: usize) -> Result<()> {
    let (free, total) = cudarc::driver::result::mem_get_info()?;
    let margin = 512 << 20;
    if bytes.saturating_add(margin) > free {
        bail!(
            "{what} needs {:.2} GB of GPU memory; {} has {:.2} GB free of {:.2} GB",
            bytes as f64 / 1e9,
            gpu.ctx.name().unwrap_or_else(|_| "the GPU".into()),
            free as f64 / 1e9,
            total as f64 / 1e9
        );
    }
    Ok(())
}

/// `2^k` for powers of two from 1024 up, else the number.
pub fn size_label(n: usize) -> String {
    if n.is_power_of_two() && n >= 1024 {
        format!("2^{}", n.trailing_zeros())
    } else {
        n.to_string()
    }
}

/// Runs `measure` over `items` with a progress bar named `what`, collecting the rows.
pub fn each<T>(what: &str, items: &[T], mut measure: impl FnMut(&T) -> Result<CaseResult>) -> Result<Vec<CaseResult>> {
    let progress = crate::progress::Progress::new(what, items.len() as u64);
    let mut rows = Vec::with_capacity(items.len());
    for item in items {
        let row = measure(item)?;
        progress.step(&row.summary());
        rows.push(row);
    }
    progress.finish();
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels() {
        assert_eq!(size_label(1 << 24), "2^24");
        assert_eq!(size_label(512), "512");
        assert_eq!(size_label(100_000_001), "100000001");
    }
}
