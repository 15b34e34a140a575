//! The typed convolution problem, its validation, and the crate's errors.
//!
//! A [`Conv2dProblem`] is a forward 2-D convolution (cross-correlation, as in cuDNN and
//! PyTorch):
//! - input `N x H x W x C`, NHWC, densely packed;
//! - weights `K x R x S x (C / groups)`, KRSC; filter `k` reads the channels of its group
//!   `k / (K / groups)`;
//! - output `N x P x Q x K`, NHWC, with `P = (H + 2 pad_h - ((R - 1) dilation_h + 1)) /
//!   stride_h + 1`, and `Q` likewise.
//!
//! One type serves the float64 reference ([`crate::reference`]), the kernels and, through
//! [`Conv2dProblem::baseline_spec`], cuDNN. Validation comes in two layers:
//! [`Conv2dProblem::check_shape`] accepts every convolution that can be computed in `usize`
//! arithmetic (the reference's domain) and fails with a [`ConvShapeError`];
//! [`Conv2dProblem::validate`] also enforces the index limits of the kernels and fails with a
//! [`ConvError`], the error of every call of this crate.

use ckb_common::baselines::ConvSpec;
use ckb_common::{DType, GpuError};

/// The largest extent the kernels take: they pass sizes, coordinates, output pixels
/// (`N * P * Q`) and the implicit GEMM's reduction (`R * S * C / groups`) as 32-bit ints,
/// as the GEMM crate's kernels do.
pub const MAX_EXTENT: usize = i32::MAX as usize;

/// The most elements one tensor may hold: the kernels compute element offsets in 64 bits.
pub const MAX_ELEMENTS: usize = i64::MAX as usize;

/// Why a convolution shape cannot be computed at all, whatever computes it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConvShapeError {
    /// A size that must be at least 1 (every one but the batch and the padding) is 0;
    /// names which.
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

/// Everything that can go wrong in this crate's calls: a shape that cannot be computed, one
/// the kernels cannot index, a short buffer (all caught before any launch), or a GPU failure.
#[derive(Debug, thiserror::Error)]
pub enum ConvError {
    /// The shape cannot be computed ([`Conv2dProblem::check_shape`]).
    #[error("conv2d: {0}")]
    Shape(#[from] ConvShapeError),
    /// A size is beyond what the kernels index ([`MAX_EXTENT`], [`MAX_ELEMENTS`]). A negative
    /// size cast to `usize` lands here.
    #[error("conv2d: {what} is {value}, the kernels take at most {limit}")]
    TooLarge {
        /// The size, in words.
        what: &'static str,
        /// Its value.
        value: usize,
        /// The most the kernels take.
        limit: usize,
    },
    /// A device buffer holds fewer elements than the problem needs.
    #[error("conv2d: {what} holds {got} elements, the problem needs {needed}")]
    BufferTooShort {
        /// "input", "weights" or "output".
        what: &'static str,
        /// Elements the problem needs.
        needed: usize,
        /// Elements the buffer holds.
        got: usize,
    },
    /// No kernel takes this pair of element types.
    #[error("conv2d: no kernel takes {input} input with {output} output (bf16 -> bf16 or f32, f16 -> f16 or f32, f32 -> f32)")]
    UnsupportedTypes {
        /// The input (and filter, bias) element type.
        input: DType,
        /// The output element type.
        output: DType,
    },
    /// A launcher refused the plan it was given (a planner defect, never a valid problem's
    /// fate).
    #[error("conv2d: the {kernel} launcher refused its plan ({plan})")]
    PlanRefused {
        /// The launcher.
        kernel: String,
        /// The plan, in words.
        plan: String,
    },
    /// A CUDA call failed, or a kernel failed to launch or run.
    #[error(transparent)]
    Gpu(#[from] GpuError),
}

/// The activation of the fused epilogue, applied after the optional bias (mirrored by
/// `ckb::conv::Activation` in kernels/conv_params.cuh).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Activation {
    /// y = v
    #[default]
    Identity,
    /// y = max(v, 0)
    Relu,
    /// y = v / (1 + e^-v)
    Silu,
    /// y = v (1 + erf(v / sqrt 2)) / 2, PyTorch's default (not the tanh approximation).
    Gelu,
}

impl Activation {
    /// Every activation, in the kernels' numbering.
    pub const ALL: [Activation; 4] = [Activation::Identity, Activation::Relu, Activation::Silu, Activation::Gelu];

    /// The kernels' code for it.
    pub fn code(self) -> i32 {
        self as i32
    }

    /// Its name in labels and records.
    pub fn name(self) -> &'static str {
        match self {
            Activation::Identity => "identity",
            Activation::Relu => "relu",
            Activation::Silu => "silu",
            Activation::Gelu => "gelu",
        }
    }
}

impl From<ConvError> for GpuError {
    /// GPU errors pass through; the crate's own errors keep their message.
    fn from(e: ConvError) -> GpuError {
        match e {
            ConvError::Gpu(g) => g,
            other => GpuError::Operator { operator: "ckb-conv", detail: other.to_string() },
        }
    }
}

/// The result of this crate's calls.
pub type ConvResult<T> = Result<T, ConvError>;

/// Shape and hyper-parameters of a forward 2-D convolution; the layouts are in the
/// [module docs](self). A batch of 0 is allowed and gives an empty output (nothing to
/// launch); padding may be 0; every other size must be at least 1.
///
/// Build it with [`new`](Self::new), [`pointwise`](Self::pointwise) or
/// [`depthwise`](Self::depthwise) and adjust it with the `with_*` methods:
///
/// ```
/// # use ckb_conv::Conv2dProblem;
/// // ResNet-50's stem: 7x7, stride 2, padding 3, 3 -> 64 channels at 224x224.
/// let stem = Conv2dProblem::new(256, (224, 224), 3, 64, (7, 7)).with_stride(2, 2).with_same_padding();
/// assert_eq!(stem.output_hw(), Ok((112, 112)));
/// assert!(stem.validate().is_ok());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Conv2dProblem {
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

impl Conv2dProblem {
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

    /// A 1x1 convolution, a GEMM over the `N * H * W` pixels at stride 1.
    pub fn pointwise(batch: usize, (in_h, in_w): (usize, usize), in_channels: usize, out_channels: usize) -> Self {
        Self::new(batch, (in_h, in_w), in_channels, out_channels, (1, 1))
    }

    /// A depthwise convolution: one filter per channel (`groups = K = C`), stride 1, no
    /// padding.
    pub fn depthwise(batch: usize, (in_h, in_w): (usize, usize), channels: usize, filter: (usize, usize)) -> Self {
        Self::new(batch, (in_h, in_w), channels, channels, filter).with_groups(channels)
    }

    /// The same problem with these strides.
    pub fn with_stride(self, stride_h: usize, stride_w: usize) -> Self {
        Self { stride_h, stride_w, ..self }
    }

    /// The same problem with this zero padding on each side.
    pub fn with_padding(self, pad_h: usize, pad_w: usize) -> Self {
        Self { pad_h, pad_w, ..self }
    }

    /// The same problem with these dilations.
    pub fn with_dilation(self, dilation_h: usize, dilation_w: usize) -> Self {
        Self { dilation_h, dilation_w, ..self }
    }

    /// The same problem in `groups` channel groups.
    pub fn with_groups(self, groups: usize) -> Self {
        Self { groups, ..self }
    }

    /// The same problem padded by half the dilated filter, `(filter - 1) * dilation / 2`, each
    /// side: at stride 1 an odd filter keeps the input's size, and at stride 2 it halves it
    /// (rounding up), as ResNet's layers do. Set the filter and dilation first.
    pub fn with_same_padding(self) -> Self {
        let half = |filter: usize, dilation: usize| filter.saturating_sub(1).saturating_mul(dilation) / 2;
        self.with_padding(half(self.filter_h, self.dilation_h), half(self.filter_w, self.dilation_w))
    }

    /// Checks that the shape describes a computable convolution with a non-empty output
    /// image and element counts that fit in `usize`: what the reference needs. Kernels need
    /// [`validate`](Self::validate).
    pub fn check_shape(&self) -> Result<(), ConvShapeError> {
        self.check_positive()?;
        for (what, count) in [("input channels", self.in_channels), ("output channels", self.out_channels)] {
            if !count.is_multiple_of(self.groups) {
                return Err(ConvShapeError::NotDivisibleByGroups { what, count, groups: self.groups });
            }
        }
        self.output_hw()?;
        self.input_len()?;
        self.weights_len()?;
        self.output_len()?;
        Ok(())
    }

    /// [`check_shape`](Self::check_shape), then the kernels' index limits: every size, padded
    /// input extent, `N * P * Q` and `R * S * C / groups` at most [`MAX_EXTENT`], every
    /// tensor at most [`MAX_ELEMENTS`] elements. Every call of this crate makes these checks
    /// before it launches.
    pub fn validate(&self) -> ConvResult<()> {
        let too_large = |what, value, limit| Err(ConvError::TooLarge { what, value, limit });
        // The given sizes first, so a negative size cast to usize is named as such rather
        // than as an overflow of some product.
        for (what, value) in self.sizes() {
            if value > MAX_EXTENT {
                return too_large(what, value, MAX_EXTENT);
            }
        }
        self.check_shape()?;
        let gemm = self.gemm_dims().expect("checked shape");
        // The given sizes are below MAX_EXTENT, so these sums cannot overflow.
        let derived = [
            ("padded input height", self.in_h + 2 * self.pad_h),
            ("padded input width", self.in_w + 2 * self.pad_w),
            ("output pixels N*P*Q", gemm.m),
            ("reduction R*S*C/groups", gemm.k),
        ];
        for (what, value) in derived {
            if value > MAX_EXTENT {
                return too_large(what, value, MAX_EXTENT);
            }
        }
        // N*P*Q and R*S*C/groups keep the output and the weights below 2^62 elements; only
        // the input, whose pixels large strides skip, can hold more.
        let input = self.input_len().expect("checked shape");
        if input > MAX_ELEMENTS {
            return too_large("input elements", input, MAX_ELEMENTS);
        }
        Ok(())
    }

    /// [`validate`](Self::validate), then that the input, weights and output buffers hold at
    /// least [`input_len`](Self::input_len), [`weights_len`](Self::weights_len) and
    /// [`output_len`](Self::output_len) elements.
    pub fn check_buffers(&self, input: usize, weights: usize, output: usize) -> ConvResult<()> {
        self.validate()?;
        let needed = [self.input_len(), self.weights_len(), self.output_len()].map(|len| len.expect("validated"));
        [("input", input), ("weights", weights), ("output", output)].into_iter().zip(needed).try_for_each(
            |((what, got), needed)| {
                if got >= needed {
                    Ok(())
                } else {
                    Err(ConvError::BufferTooShort { what, needed, got })
                }
            },
        )
    }

    /// No images (batch 0): nothing to launch.
    pub fn is_empty(&self) -> bool {
        self.batch == 0
    }

    /// Every size as given, named.
    fn sizes(&self) -> [(&'static str, usize); 14] {
        [
            ("batch", self.batch),
            ("input height", self.in_h),
            ("input width", self.in_w),
            ("input channels", self.in_channels),
            ("output channels", self.out_channels),
            ("filter height", self.filter_h),
            ("filter width", self.filter_w),
            ("stride height", self.stride_h),
            ("stride width", self.stride_w),
            ("padding height", self.pad_h),
            ("padding width", self.pad_w),
            ("dilation height", self.dilation_h),
            ("dilation width", self.dilation_w),
            ("groups", self.groups),
        ]
    }

    /// Every size but the batch (0: nothing to do) and the padding is at least 1.
    fn check_positive(&self) -> Result<(), ConvShapeError> {
        let may_be_zero = |what: &str| what == "batch" || what.starts_with("padding");
        match self.sizes().into_iter().find(|&(what, size)| size == 0 && !may_be_zero(what)) {
            Some((what, _)) => Err(ConvShapeError::Zero(what)),
            None => Ok(()),
        }
    }

    /// Output height and width (P, Q).
    pub fn output_hw(&self) -> Result<(usize, usize), ConvShapeError> {
        self.check_positive()?;
        let p = output_extent("height", self.in_h, self.filter_h, self.stride_h, self.pad_h, self.dilation_h)?;
        let q = output_extent("width", self.in_w, self.filter_w, self.stride_w, self.pad_w, self.dilation_w)?;
        Ok((p, q))
    }

    /// C / groups: the input channels each filter reads. For a checked shape (divides by
    /// `groups`).
    pub fn channels_per_group(&self) -> usize {
        self.in_channels / self.groups
    }

    /// K / groups: the filters of each group. For a checked shape (divides by `groups`).
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

    /// The per-group GEMM sizes; see [`im2col`](crate::reference::im2col).
    pub fn gemm_dims(&self) -> Result<GemmDims, ConvShapeError> {
        self.check_shape()?;
        let (p, q) = self.output_hw()?;
        Ok(GemmDims {
            m: checked_product("im2col rows", &[self.batch, p, q])?,
            n: self.filters_per_group(),
            k: checked_product("im2col columns", &[self.filter_h, self.filter_w, self.channels_per_group()])?,
        })
    }

    /// Floating-point operations of the dense direct convolution,
    /// `2 * N * K * P * Q * (C / groups) * R * S` (a multiply-add counted as two, padding
    /// taps included): what the gates and cuDNN's baseline count.
    pub fn flops(&self) -> Result<f64, ConvShapeError> {
        let dims = self.gemm_dims()?;
        Ok(2.0 * dims.m as f64 * dims.n as f64 * dims.k as f64 * self.groups as f64)
    }

    /// The same problem for the cuDNN baseline (`ckb_common::baselines::Cudnn`), with IEEE
    /// fp32 math; choose another with [`ConvSpec::with_fp32_math`].
    pub fn baseline_spec(&self) -> ConvSpec {
        ConvSpec::new(
            self.batch,
            self.in_h,
            self.in_w,
            self.in_channels,
            self.out_channels,
            self.filter_h,
            self.filter_w,
        )
        .with_padding(self.pad_h, self.pad_w)
        .with_stride(self.stride_h, self.stride_w)
        .with_dilation(self.dilation_h, self.dilation_w)
        .with_groups(self.groups)
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

pub(crate) fn checked_product(what: &'static str, sizes: &[usize]) -> Result<usize, ConvShapeError> {
    sizes.iter().try_fold(1usize, |acc, &size| acc.checked_mul(size)).ok_or(ConvShapeError::Overflow(what))
}
