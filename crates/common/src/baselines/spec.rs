//! The problems the baselines solve, and their validation. Validation is pure, so bad
//! shapes and short buffers are rejected, and tested, without a GPU.

use crate::error::{GpuError, GpuResult};
use crate::layout::Layout;

/// The GEMM problem lives in [`crate::gemm`], shared with the GEMM crate.
pub use crate::gemm::{GemmLens, GemmSpec};

/// How f32 inputs are multiplied. Half-precision inputs always run on tensor cores with
/// fp32 accumulation; this choice applies to f32 inputs only and is ignored otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize)]
pub enum Fp32Math {
    /// fp32 accuracy (cuBLAS `CUBLAS_COMPUTE_32F`; cuDNN leaves out engines with the
    /// `TENSOR_CORE` numerical note, which would round to TF32; ckb-gemm splits each input
    /// into two TF32 terms and sums three tensor-core products, 3xTF32).
    #[default]
    Ieee,
    /// Inputs rounded to TF32 on tensor cores, fp32 accumulation
    /// (`CUBLAS_COMPUTE_32F_FAST_TF32`; cuDNN may also pick its tensor-core engines).
    Tf32,
}

/// Elements a `rows x cols` matrix with leading dimension `ld` spans, with overflow checked.
pub fn matrix_len(what: &'static str, rows: usize, cols: usize, layout: Layout, ld: usize) -> GpuResult<usize> {
    let min_ld = layout.min_ld(rows, cols);
    if ld < min_ld {
        return Err(GpuError::InvalidShape {
            what,
            detail: format!(
                "leading dimension {ld} is below {min_ld}, the minimum for a {rows}x{cols} {layout:?} matrix"
            ),
        });
    }
    if rows == 0 || cols == 0 {
        return Ok(0);
    }
    let (outer, inner) = match layout {
        Layout::RowMajor => (rows, cols),
        Layout::ColMajor => (cols, rows),
    };
    (outer - 1).checked_mul(ld).and_then(|v| v.checked_add(inner)).ok_or_else(|| GpuError::InvalidShape {
        what,
        detail: format!("a {rows}x{cols} {layout:?} matrix with leading dimension {ld} overflows usize"),
    })
}

/// Fails with [`GpuError::BufferTooSmall`] unless `got >= needed`.
pub fn require_elements(what: &'static str, got: usize, needed: usize) -> GpuResult<()> {
    if got < needed {
        Err(GpuError::BufferTooSmall { what, needed, got })
    } else {
        Ok(())
    }
}

/// [`require_elements`] for each `(what, got, needed)`.
fn require_each<const N: usize>(checks: [(&'static str, usize, usize); N]) -> GpuResult<()> {
    checks.into_iter().try_for_each(|(what, got, needed)| require_elements(what, got, needed))
}

/// 2-D cross-correlation (what deep learning calls convolution), forward:
/// input x is NHWC (`n x h x w x c`), filters are KRSC (`k x r x s x c/groups`), output y
/// is NHWK (`n x p x q x k`), all densely packed. Padding is zeros. With `groups > 1`,
/// output channel `ko` sees input channels `g*c/groups ..` of its group `g = ko / (k/groups)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConvSpec {
    /// Batch size.
    pub n: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Input channels, all groups together.
    pub c: usize,
    /// Output channels (filters), all groups together.
    pub k: usize,
    /// Filter height.
    pub r: usize,
    /// Filter width.
    pub s: usize,
    /// (height, width), each side.
    pub pad: [usize; 2],
    /// (height, width) step between output pixels, in input pixels.
    pub stride: [usize; 2],
    /// (height, width) step between filter taps, in input pixels.
    pub dilation: [usize; 2],
    /// Channel groups; divides both `c` and `k`.
    pub groups: usize,
    /// How f32 inputs are multiplied.
    pub fp32_math: Fp32Math,
}

/// Elements each conv tensor holds, and the output's spatial size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvLens {
    /// Elements of the NHWC input.
    pub x: usize,
    /// Elements of the KRSC filters.
    pub w: usize,
    /// Elements of the NPQK output.
    pub y: usize,
    /// Output height.
    pub p: usize,
    /// Output width.
    pub q: usize,
}

impl ConvSpec {
    /// Stride 1, no padding, no dilation, one group, IEEE fp32.
    pub fn new(n: usize, h: usize, w: usize, c: usize, k: usize, r: usize, s: usize) -> ConvSpec {
        ConvSpec {
            n,
            h,
            w,
            c,
            k,
            r,
            s,
            pad: [0, 0],
            stride: [1, 1],
            dilation: [1, 1],
            groups: 1,
            fp32_math: Fp32Math::Ieee,
        }
    }

    /// The same problem with this zero padding on each side.
    pub fn with_padding(self, pad_h: usize, pad_w: usize) -> ConvSpec {
        ConvSpec { pad: [pad_h, pad_w], ..self }
    }

    /// The same problem with these strides.
    pub fn with_stride(self, stride_h: usize, stride_w: usize) -> ConvSpec {
        ConvSpec { stride: [stride_h, stride_w], ..self }
    }

    /// The same problem with these dilations.
    pub fn with_dilation(self, dilation_h: usize, dilation_w: usize) -> ConvSpec {
        ConvSpec { dilation: [dilation_h, dilation_w], ..self }
    }

    /// The same problem in `groups` channel groups.
    pub fn with_groups(self, groups: usize) -> ConvSpec {
        ConvSpec { groups, ..self }
    }

    /// The same problem with this fp32 math mode.
    pub fn with_fp32_math(self, fp32_math: Fp32Math) -> ConvSpec {
        ConvSpec { fp32_math, ..self }
    }

    /// Input channels each filter sees.
    pub fn channels_per_group(&self) -> usize {
        self.c / self.groups.max(1)
    }

    /// Checks the shape and returns the tensor sizes and the output's height and width.
    pub fn lens(&self) -> GpuResult<ConvLens> {
        let invalid = |detail: String| GpuError::InvalidShape { what: "conv2d", detail };
        let dims = [self.n, self.h, self.w, self.c, self.k, self.r, self.s];
        if dims.contains(&0) {
            return Err(invalid(format!("n, h, w, c, k, r and s must be at least 1, got {dims:?}")));
        }
        if self.stride.contains(&0) || self.dilation.contains(&0) || self.groups == 0 {
            return Err(invalid(format!(
                "stride {:?}, dilation {:?} and groups {} must be at least 1",
                self.stride, self.dilation, self.groups
            )));
        }
        if !self.c.is_multiple_of(self.groups) || !self.k.is_multiple_of(self.groups) {
            return Err(invalid(format!("groups {} must divide c {} and k {}", self.groups, self.c, self.k)));
        }
        let overflow = || invalid(format!("{self:?} overflows usize"));
        let out_extent = |input: usize, filter: usize, axis: usize| -> GpuResult<usize> {
            let padded = self.pad[axis].checked_mul(2).and_then(|p| p.checked_add(input)).ok_or_else(overflow)?;
            let reach =
                (filter - 1).checked_mul(self.dilation[axis]).and_then(|v| v.checked_add(1)).ok_or_else(overflow)?;
            if reach > padded {
                return Err(invalid(format!(
                    "the dilated filter spans {reach} but the padded input is only {padded} along {}",
                    ["height", "width"][axis]
                )));
            }
            Ok((padded - reach) / self.stride[axis] + 1)
        };
        let p = out_extent(self.h, self.r, 0)?;
        let q = out_extent(self.w, self.s, 1)?;
        let product = |xs: &[usize]| xs.iter().try_fold(1usize, |acc, &v| acc.checked_mul(v)).ok_or_else(overflow);
        Ok(ConvLens {
            x: product(&[self.n, self.h, self.w, self.c])?,
            w: product(&[self.k, self.r, self.s, self.channels_per_group()])?,
            y: product(&[self.n, p, q, self.k])?,
            p,
            q,
        })
    }

    /// [`ConvSpec::lens`], then checks that the buffers hold enough elements.
    pub fn validate(&self, len_x: usize, len_w: usize, len_y: usize) -> GpuResult<ConvLens> {
        let lens = self.lens()?;
        require_each([
            ("conv input x", len_x, lens.x),
            ("conv filter w", len_w, lens.w),
            ("conv output y", len_y, lens.y),
        ])?;
        Ok(lens)
    }

    /// Floating-point operations, `2 n p q k r s c/groups`; 0 for an invalid shape.
    pub fn flops(&self) -> f64 {
        self.lens().map_or(0.0, |l| {
            2.0 * (self.n * l.p * l.q * self.k) as f64 * (self.r * self.s * self.channels_per_group()) as f64
        })
    }
}
