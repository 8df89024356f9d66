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

mod error;
pub mod rng;
mod tensor;

pub use error::{Result, TensorError};
pub use rng::Rng;
pub use tensor::Tensor;

pub use ndarray;
