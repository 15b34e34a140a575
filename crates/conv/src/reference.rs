//! CPU reference for 2-D convolution (cross-correlation, as in cuDNN and PyTorch), in float64.
//!
//! Tensor layouts:
//! - input  `N x H x W x C`, NHWC, densely packed;
//! - weights `K x R x S x (C / groups)`, KRSC: filter `k` reads the channels of its group,
//!   `g = k / (K / groups)`, namely channels `g * C/groups .. (g + 1) * C/groups`;
//! - output `N x P x Q x K`, NHWK.
//!
//! Output pixel `(p, q)` reads input row `p * stride_h - pad_h + r * dilation_h` for filter
//! row `r` (likewise for columns). Padding is symmetric per dimension and reads as zero.
//! NaN and inf propagate as in plain arithmetic; positions that fall in the padding do not
//! multiply anything, so `0 * inf` never arises from them.

use rayon::prelude::*;
use thiserror::Error;

/// Why a convolution shape cannot be computed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ConvShapeError {
    /// A size that must be at least 1 (every one but the batch) is 0; names which.
    #[error("{0} must be at least 1")]
    Zero(&'static str),
    /// The input or output channels are not a multiple of the groups.
    #[error("{what} ({count}) is not divisible by groups ({groups})")]
    NotDivisibleByGroups {
        /// "input channels" or "output channels".
        what: &'static str,
        /// Their number.
        count: usize,
        /// The groups.
        groups: usize,
    },
    /// Along one axis the dilated filter reaches past the padded input, so no output pixel
    /// fits.
    #[error("dilated filter extent {extent} exceeds padded input extent {padded} along {axis}")]
    FilterLargerThanInput {
        /// "height" or "width".
        axis: &'static str,
        /// The dilated filter's extent, `(filter - 1) * dilation + 1`.
        extent: usize,
        /// The padded input's extent, `input + 2 * pad`.
        padded: usize,
    },
    /// An extent or element count does not fit in `usize`; names which.
    #[error("{0} overflows usize")]
    Overflow(&'static str),
    /// A slice handed to the reference is not as long as the shape needs.
    #[error("{what} holds {actual} elements, the shape needs {expected}")]
    LengthMismatch {
        /// "input" or "weights".
        what: &'static str,
        /// Elements the shape needs.
        expected: usize,
        /// Elements the slice holds.
        actual: usize,
    },
}

/// Shape and hyper-parameters of a forward 2-D convolution. A batch of 0 is allowed and
/// gives an empty output; every other size must be at least 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv2dParams {
    /// N
    pub batch: usize,
    /// H
    pub in_h: usize,
    /// W
    pub in_w: usize,
    /// C, all groups together.
    pub in_channels: usize,
    /// K, all groups together.
    pub out_channels: usize,
    /// R
    pub filter_h: usize,
    /// S
    pub filter_w: usize,
    /// Step between output rows, in input rows.
    pub stride_h: usize,
    /// Step between output columns, in input columns.
    pub stride_w: usize,
    /// Zero rows added above and below the input, each side.
    pub pad_h: usize,
    /// Zero columns added left and right of the input, each side.
    pub pad_w: usize,
    /// Step between filter rows, in input rows.
    pub dilation_h: usize,
    /// Step between filter columns, in input columns.
    pub dilation_w: usize,
    /// Channel groups; must divide both channel counts.
    pub groups: usize,
}

/// The sizes of the GEMM that one group of the convolution is equivalent to:
/// `output (m x n) = im2col (m x k) * weights of the group (k x n)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GemmDims {
    /// N * P * Q, one row per output pixel.
    pub m: usize,
    /// K / groups, one column per filter of the group.
    pub n: usize,
    /// R * S * C / groups, one term per filter tap and channel of the group.
    pub k: usize,
}

impl Conv2dParams {
    /// A dense convolution: stride 1, no padding, no dilation, one group.
    pub fn new(
        batch: usize,
        (in_h, in_w): (usize, usize),
        in_channels: usize,
        out_channels: usize,
        (filter_h, filter_w): (usize, usize),
    ) -> Self {
        Self {
            batch,
            in_h,
            in_w,
            in_channels,
            out_channels,
            filter_h,
            filter_w,
            stride_h: 1,
            stride_w: 1,
            pad_h: 0,
            pad_w: 0,
            dilation_h: 1,
            dilation_w: 1,
            groups: 1,
        }
    }

    /// Checks that the shape describes a computable convolution with a non-empty output
    /// image and element counts that fit in `usize`.
    pub fn validate(&self) -> Result<(), ConvShapeError> {
        self.check_positive()?;
        for (what, count) in [("input channels", self.in_channels), ("output channels", self.out_channels)] {
            if count % self.groups != 0 {
                return Err(ConvShapeError::NotDivisibleByGroups { what, count, groups: self.groups });
            }
        }
        self.output_hw()?;
        self.input_len()?;
        self.weights_len()?;
        self.output_len()?;
        Ok(())
    }

    fn check_positive(&self) -> Result<(), ConvShapeError> {
        let positive = [
            ("input height", self.in_h),
            ("input width", self.in_w),
            ("input channels", self.in_channels),
            ("output channels", self.out_channels),
            ("filter height", self.filter_h),
            ("filter width", self.filter_w),
            ("stride height", self.stride_h),
            ("stride width", self.stride_w),
            ("dilation height", self.dilation_h),
            ("dilation width", self.dilation_w),
            ("groups", self.groups),
        ];
        if let Some((what, _)) = positive.iter().find(|(_, size)| *size == 0) {
            return Err(ConvShapeError::Zero(what));
        }
        Ok(())
    }

    /// Output height and width (P, Q).
    pub fn output_hw(&self) -> Result<(usize, usize), ConvShapeError> {
        self.check_positive()?;
        let p = output_extent("height", self.in_h, self.filter_h, self.stride_h, self.pad_h, self.dilation_h)?;
        let q = output_extent("width", self.in_w, self.filter_w, self.stride_w, self.pad_w, self.dilation_w)?;
        Ok((p, q))
    }

    /// C / groups: the input channels each filter reads. For a validated shape (divides by
    /// `groups`).
    pub fn channels_per_group(&self) -> usize {
        self.in_channels / self.groups
    }

    /// K / groups: the filters of each group. For a validated shape (divides by `groups`).
    pub fn filters_per_group(&self) -> usize {
        self.out_channels / self.groups
    }

    /// Elements of the NHWC input.
    pub fn input_len(&self) -> Result<usize, ConvShapeError> {
        checked_product("input", &[self.batch, self.in_h, self.in_w, self.in_channels])
    }

    /// Elements of the KRSC weights.
    pub fn weights_len(&self) -> Result<usize, ConvShapeError> {
        let per_group = self.in_channels / self.groups.max(1);
        checked_product("weights", &[self.out_channels, self.filter_h, self.filter_w, per_group])
    }

    /// Elements of the NPQK output.
    pub fn output_len(&self) -> Result<usize, ConvShapeError> {
        let (p, q) = self.output_hw()?;
        checked_product("output", &[self.batch, p, q, self.out_channels])
    }

    /// The per-group GEMM sizes; see [`im2col`].
    pub fn gemm_dims(&self) -> Result<GemmDims, ConvShapeError> {
        self.validate()?;
        let (p, q) = self.output_hw()?;
        Ok(GemmDims {
            m: checked_product("im2col rows", &[self.batch, p, q])?,
            n: self.filters_per_group(),
            k: checked_product("im2col columns", &[self.filter_h, self.filter_w, self.channels_per_group()])?,
        })
    }

    /// Floating-point operations of the forward pass, a multiply-add counted as two.
    pub fn flops(&self) -> Result<f64, ConvShapeError> {
        let dims = self.gemm_dims()?;
        Ok(2.0 * dims.m as f64 * dims.n as f64 * dims.k as f64 * self.groups as f64)
    }

    /// For output pixel number `pixel` (in NPQ order), each filter tap `r * S + s` that lands
    /// inside the input, with the offset of the input pixel it reads (channel 0).
    fn taps(&self, pixel: usize) -> impl Iterator<Item = (usize, usize)> + '_ {
        let (p_size, q_size) = self.output_hw().expect("validated shape");
        let (n, p, q) = (pixel / (p_size * q_size), pixel / q_size % p_size, pixel % q_size);
        // Input index read by output index `out` through filter tap `tap`; None in the padding.
        let source = |out: usize, tap: usize, stride: usize, pad: usize, dilation: usize, extent: usize| {
            (out * stride + tap * dilation).checked_sub(pad).filter(|&at| at < extent)
        };
        let rows = (0..self.filter_h)
            .filter_map(move |r| source(p, r, self.stride_h, self.pad_h, self.dilation_h, self.in_h).map(|h| (r, h)));
        rows.flat_map(move |(r, h)| {
            (0..self.filter_w).filter_map(move |s| {
                let w = source(q, s, self.stride_w, self.pad_w, self.dilation_w, self.in_w)?;
                Some((r * self.filter_w + s, ((n * self.in_h + h) * self.in_w + w) * self.in_channels))
            })
        })
    }

    fn check_lengths(&self, input: &[f64], weights: Option<&[f64]>) -> Result<(), ConvShapeError> {
        self.validate()?;
        check_len("input", self.input_len()?, input.len())?;
        if let Some(weights) = weights {
            check_len("weights", self.weights_len()?, weights.len())?;
        }
        Ok(())
    }
}

fn output_extent(
    axis: &'static str,
    input: usize,
    filter: usize,
    stride: usize,
    pad: usize,
    dilation: usize,
) -> Result<usize, ConvShapeError> {
    let overflow = || ConvShapeError::Overflow("dilated filter or padded input extent");
    let extent = (filter - 1).checked_mul(dilation).and_then(|e| e.checked_add(1)).ok_or_else(overflow)?;
    let padded = pad.checked_mul(2).and_then(|p| p.checked_add(input)).ok_or_else(overflow)?;
    if extent > padded {
        return Err(ConvShapeError::FilterLargerThanInput { axis, extent, padded });
    }
    Ok((padded - extent) / stride + 1)
}

fn checked_product(what: &'static str, sizes: &[usize]) -> Result<usize, ConvShapeError> {
    sizes.iter().try_fold(1usize, |acc, &size| acc.checked_mul(size)).ok_or(ConvShapeError::Overflow(what))
}

fn check_len(what: &'static str, expected: usize, actual: usize) -> Result<(), ConvShapeError> {
    if expected == actual {
        Ok(())
    } else {
        Err(ConvShapeError::LengthMismatch { what, expected, actual })
    }
}

/// Forward convolution: NHWC input and KRSC weights to an NPQK output, computed directly
/// (not through [`im2col`]), in parallel over output pixels.
pub fn conv2d(params: &Conv2dParams, input: &[f64], weights: &[f64]) -> Result<Vec<f64>, ConvShapeError> {
    params.check_lengths(input, Some(weights))?;
    let mut output = vec![0.0; params.output_len()?];
    let (c_group, k_group) = (params.channels_per_group(), params.filters_per_group());
    let filter_len = params.filter_h * params.filter_w * c_group;
    output.par_chunks_mut(params.out_channels).enumerate().for_each(|(pixel, out_pixel)| {
        let taps: Vec<(usize, usize)> = params.taps(pixel).collect();
        for (k, out) in out_pixel.iter_mut().enumerate() {
            let channel_base = (k / k_group) * c_group;
            let filter = &weights[k * filter_len..(k + 1) * filter_len];
            *out = taps
                .iter()
                .map(|&(tap, pixel_at)| {
                    let channels = &input[pixel_at + channel_base..][..c_group];
                    channels.iter().zip(&filter[tap * c_group..][..c_group]).map(|(x, w)| x * w).sum::<f64>()
                })
                .sum();
        }
    });
    Ok(output)
}

/// The im2col matrix of one group: row-major `m x k` (see [`Conv2dParams::gemm_dims`]), row
/// `(n * P + p) * Q + q` for each output pixel, column `(r * S + s) * C/groups + c` for each
/// filter tap and channel of the group, zero where the tap lands in the padding.
///
/// The columns follow the KRSC weight order, so filter `k` of group `g` is one contiguous row
/// of the weights and `output[pixel][g * K/groups + j] = sum_col im2col[pixel][col] *
/// weights[g * K/groups + j][col]`: a GEMM with the group's weights read as a column-major
/// `k x n` matrix.
pub fn im2col(params: &Conv2dParams, input: &[f64], group: usize) -> Result<Vec<f64>, ConvShapeError> {
    params.check_lengths(input, None)?;
    assert!(group < params.groups, "group {group} out of range for {} groups", params.groups);
    let dims = params.gemm_dims()?;
    let c_group = params.channels_per_group();
    let channel_base = group * c_group;
    let mut columns = vec![0.0; checked_product("im2col", &[dims.m, dims.k])?];
    columns.par_chunks_mut(dims.k).enumerate().for_each(|(pixel, row)| {
        for (tap, pixel_at) in params.taps(pixel) {
            row[tap * c_group..][..c_group].copy_from_slice(&input[pixel_at + channel_base..][..c_group]);
        }
    });
    Ok(columns)
}
