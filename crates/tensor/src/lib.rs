//! # gradus-tensor
//!
//! N-dimensional `f32` tensors for gradus, on [`ndarray`]: creation, NumPy-style broadcasting,
//! elementwise math, reductions, shape manipulation, matrix products through
//! [`matrixmultiply::sgemm`], numerically stable softmax, and the NHWC convolution and pooling
//! kernels the layers are built from. There is no automatic differentiation here: that is
//! `gradus-autograd`, built on top.
//!
//! Every operation that can be given operands that do not fit returns a [`Result`] whose
//! [`TensorError`] names the operation and the shapes involved; nothing in this crate panics on user
//! input.
//!
//! ## Quick start
//!
//! ```
//! use gradus_tensor::{Rng, Tensor};
//!
//! let mut rng = Rng::seed_from_u64(0);
//! let x = Tensor::rand_uniform(&[4, 3], -1.0, 1.0, &mut rng);
//! let w = Tensor::ones(&[3, 2]);
//! assert_eq!(x.shape(), &[4, 3]);
//! assert_eq!(w.to_vec(), vec![1.0; 6]);
//! # Ok::<(), gradus_tensor::TensorError>(())
//! ```
#![deny(missing_docs)]
#![deny(missing_debug_implementations)]

mod broadcast;
mod conv;
mod elementwise;
mod error;
mod linalg;
mod pool;
mod reduce;
pub mod rng;
mod shape;
mod softmax;
mod tensor;

pub use broadcast::broadcast_shapes;
pub use conv::{
    Conv2dGeometry, Padding, Pool2dGeometry, col2im, conv2d, conv2d_backward_input,
    conv2d_backward_kernel, im2col,
};
pub use elementwise::erf;
pub use error::{Result, TensorError};
pub use linalg::gemm;
pub use pool::{avg_pool2d, avg_pool2d_backward, max_pool2d, max_pool2d_backward};
pub use rng::Rng;
pub use tensor::Tensor;

pub use ndarray;
