//! # gradus-tensor
//!
//! N-dimensional `f32` tensors for gradus, on [`ndarray`]: creation, NumPy-style broadcasting,
//! elementwise math, reductions, shape manipulation, matrix products (an AVX2+FMA kernel of its
//! own, [`matrixmultiply::sgemm`] elsewhere), numerically stable softmax, and the NHWC convolution
//! and pooling kernels the layers are built from. There is no automatic differentiation here:
//! that is `gradus-autograd`, built on top; the adjoints it needs are here
//! ([`Tensor::sum_to_shape`] for broadcasting, [`Tensor::scatter_add_rows`] for gathers,
//! [`col2im`], [`conv2d_backward_input`], [`conv2d_backward_kernel`], [`max_pool2d_backward`],
//! [`avg_pool2d_backward`]).
//!
//! Every operation that can be given operands that do not fit returns a [`Result`] whose
//! [`TensorError`] names the operation and the shapes involved; nothing in this crate panics on user
//! input.
//!
//! ## What is where
//! - Broadcasting: [`broadcast_shapes`], [`Tensor::broadcast_to`], [`Tensor::sum_to_shape`].
//! - Elementwise: [`Tensor::add`] and friends (also `&a + &b`, giving a `Result`), comparisons as
//!   0/1, scalar operations, unary math and activations ([`Tensor::sigmoid`], [`Tensor::gelu`], ...).
//! - Reductions: [`Tensor::sum_all`], [`Tensor::sum_axes`], [`Tensor::argmax`], [`Tensor::norm_l2`], ...
//! - Shapes: [`Tensor::reshape`], [`Tensor::permute`], [`Tensor::transpose`] and slices (views, no
//!   copy), [`Tensor::concat`], [`Tensor::stack`], [`Tensor::gather_rows`], [`Tensor::one_hot`].
//! - Linear algebra: [`Tensor::matmul`] (batched, broadcasting, strided operands), [`gemm`] into an
//!   existing buffer.
//! - Threads: [`parallel`] sets how many threads the kernels use (`GRADUS_NUM_THREADS`, default
//!   the available CPUs); results are the same bits for any count.
//! - Memory: [`buffer`] keeps the large buffers of dropped tensors for reuse by the next step.
//! - [`Tensor::softmax`], [`Tensor::log_softmax`], [`Tensor::logsumexp`].
//! - NHWC kernels: [`Conv2dGeometry`], [`Padding`], [`im2col`], [`conv2d`] and [`conv2d_with`]
//!   (with a fused epilogue), [`max_pool2d`],
//!   [`avg_pool2d`] and their gradients.
//! - Tests: [`Tensor::allclose`], [`Tensor::max_abs_diff`].
//!
//! ## Quick start
//!
//! ```
//! use gradus_tensor::{Padding, Rng, Tensor, conv2d, max_pool2d};
//!
//! let mut rng = Rng::seed_from_u64(0);
//! // A Dense layer's forward pass: softmax(x W + b).
//! let x = Tensor::rand_uniform(&[4, 3], -1.0, 1.0, &mut rng);
//! let w = Tensor::rand_normal(&[3, 2], 0.0, 0.1, &mut rng);
//! let b = Tensor::zeros(&[2]);
//! let p = x.matmul(&w)?.add(&b)?.softmax(-1)?;
//! assert_eq!(p.shape(), &[4, 2]);
//! assert!((p.sum_axis(-1, false)?.sum_all() - 4.0).abs() < 1e-5);
//!
//! // The kernel gradient x^T dy reads x through a transposed view, without a copy.
//! let dy = Tensor::ones(&[4, 2]);
//! let dw = x.transpose()?.matmul(&dy)?;
//! assert_eq!(dw.shape(), &[3, 2]);
//!
//! // Shapes that do not fit are errors, not panics.
//! assert!(x.add(&Tensor::ones(&[2])).is_err());
//!
//! // NHWC convolution and pooling.
//! let img = Tensor::rand_uniform(&[2, 8, 8, 1], 0.0, 1.0, &mut rng);
//! let kernel = Tensor::rand_normal(&[3, 3, 1, 4], 0.0, 0.1, &mut rng);
//! let y = conv2d(&img, &kernel, (1, 1), Padding::Same)?.relu();
//! let pooled = max_pool2d(&y, (2, 2), (2, 2), Padding::Valid)?;
//! assert_eq!(pooled.shape(), &[2, 4, 4, 4]);
//! # Ok::<(), gradus_tensor::TensorError>(())
//! ```
#![deny(missing_docs)]
#![deny(missing_debug_implementations)]

mod broadcast;
pub mod buffer;
mod conv;
mod elementwise;
mod error;
mod fused;
mod linalg;
pub mod parallel;
mod pool;
mod reduce;
pub mod rng;
mod shape;
mod simd;
mod softmax;
mod tensor;

pub use broadcast::broadcast_shapes;
pub use conv::{
    Conv2dGeometry, DIRECT_MAX_PATCH, Padding, Pool2dGeometry, col2im, conv2d,
    conv2d_backward_input, conv2d_backward_kernel, conv2d_backward_params,
    conv2d_backward_params_with, conv2d_backward_with, conv2d_with, im2col,
};
pub use elementwise::erf;
pub use error::{Result, TensorError};
pub use fused::{FUSED_MAX_POOL_WINDOW, conv2d_max_pool_backward_params, conv2d_max_pool_with};
pub use linalg::gemm;
pub use pool::{avg_pool2d, avg_pool2d_backward, max_pool2d, max_pool2d_backward};
pub use rng::Rng;
pub use tensor::Tensor;

pub use ndarray;
