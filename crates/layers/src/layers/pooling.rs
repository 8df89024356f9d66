//! `MaxPooling2D` and `AveragePooling2D` over NHWC inputs.

use gradus_autograd::Var;
use gradus_tensor::{Conv2dGeometry, Padding, Rng};
use serde::{Deserialize, Serialize};

use crate::base::Base;
use crate::error::{Result, invalid};
use crate::layer::{Layer, LayerConfig, PoolWindow};
use crate::spatial::{IntoPadding, Size2, padding_serde, valid};

fn two() -> Size2 {
    Size2(2, 2)
}

/// Keras' arguments of the pooling layers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct PoolArgs {
    #[serde(default = "two")]
    pool_size: Size2,
    #[serde(default)]
    strides: Option<Size2>,
    #[serde(default = "valid", with = "padding_serde")]
    padding: Padding,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Max,
    Average,
}

/// What both pooling layers share.
#[derive(Debug, Clone)]
struct Pool {
    base: Base,
    args: PoolArgs,
    kind: Kind,
}

impl Pool {
    fn new(kind: Kind, name: &str, pool_size: Size2) -> Pool {
        Pool {
            base: Base::new(name),
            args: PoolArgs {
                pool_size,
                strides: None,
                padding: Padding::Valid,
            },
            kind,
        }
    }

    fn class(&self) -> &'static str {
        match self.kind {
            Kind::Max => "MaxPooling2D",
            Kind::Average => "AveragePooling2D",
        }
    }

    fn strides(&self) -> Size2 {
        self.args.strides.unwrap_or(self.args.pool_size)
    }

    fn geometry(&self, batch_shape: &[usize]) -> Result<Conv2dGeometry> {
        Conv2dGeometry::new(
            batch_shape,
            self.args.pool_size.pair(),
            self.strides().pair(),
            self.args.padding,
        )
        .map_err(|e| {
            self.base
                .shape_error(format!("an input the window fits ({e})"), &batch_shape[1..])
        })
    }

    fn build(&mut self, input_shape: &[usize]) -> Result<()> {
        self.base.check_pending()?;
        let (p, s) = (self.args.pool_size, self.strides());
        if p.0 == 0 || p.1 == 0 || s.0 == 0 || s.1 == 0 {
            return Err(invalid(
                self.class(),
                format!(
                    "expected positive pool_size and strides, got pool_size {:?} and strides {:?}",
                    p.pair(),
                    s.pair()
                ),
            ));
        }
        self.output_shape(input_shape)?;
        self.base.input_shape = Some(input_shape.to_vec());
        Ok(())
    }

    fn output_shape(&self, input_shape: &[usize]) -> Result<Vec<usize>> {
        let &[h, w, c] = input_shape else {
            return Err(self
                .base
                .shape_error("[height, width, channels]", input_shape));
        };
        let g = self.geometry(&[1, h, w, c])?;
        Ok(vec![g.out_h, g.out_w, c])
    }

    fn call<'t>(&self, x: &Var<'t>) -> Result<Var<'t>> {
        let built = self.base.built()?;
        let shape = x.shape();
        if shape.len() != 4 || shape[3] != built[2] {
            return Err(self
                .base
                .shape_error(format!("[batch, height, width, {}]", built[2]), shape));
        }
        self.geometry(shape)?;
        let (p, s, pad) = (
            self.args.pool_size.pair(),
            self.strides().pair(),
            self.args.padding,
        );
        Ok(match self.kind {
            Kind::Max => x.max_pool2d(p, s, pad)?,
            Kind::Average => x.avg_pool2d(p, s, pad)?,
        })
    }
}

macro_rules! pooling_layer {
    ($(#[$doc:meta])* $ty:ident, $kind:expr, $name:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone)]
        pub struct $ty {
            pool: Pool,
        }

        impl $ty {
            /// A pooling layer with a `pool_size` window (one number or `(h, w)`), strides equal
            /// to the pool size and `"valid"` padding, as Keras.
            pub fn new(pool_size: impl Into<Size2>) -> Self {
                $ty {
                    pool: Pool::new($kind, $name, pool_size.into()),
                }
            }

            pub(crate) fn from_args(args: PoolArgs, name: Option<String>) -> Self {
                let mut layer = $ty::new(args.pool_size);
                layer.pool.args = args;
                if let Some(n) = name {
                    layer.pool.base.rename(&n);
                }
                layer
            }

            /// The strides (Keras: `None`, meaning the pool size).
            pub fn strides(mut self, strides: impl Into<Size2>) -> Self {
                self.pool.args.strides = Some(strides.into());
                self
            }

            /// The padding, by value or by name (Keras: `"valid"`).
            pub fn padding(mut self, padding: impl IntoPadding) -> Self {
                if let Some(p) = self.pool.base.keep(padding.into_padding()) {
                    self.pool.args.padding = p;
                }
                self
            }

            /// The layer's name.
            pub fn with_name(mut self, name: &str) -> Self {
                self.pool.base.rename(name);
                self
            }
        }

        impl Default for $ty {
            fn default() -> Self {
                $ty::new(2)
            }
        }

        impl Layer for $ty {
            fn splits_over_batch(&self, _training: bool) -> bool {
                true
            }
            fn class_name(&self) -> &'static str {
                self.pool.class()
            }
            fn name(&self) -> &str {
                &self.pool.base.name
            }
            fn set_name(&mut self, name: &str) -> Result<()> {
                self.pool.base.set_name(name)
            }
            fn build(&mut self, input_shape: &[usize], _rng: &mut Rng) -> Result<()> {
                self.pool.build(input_shape)
            }
            fn built_input_shape(&self) -> Option<&[usize]> {
                self.pool.base.input_shape.as_deref()
            }
            fn call<'t>(&self, x: &Var<'t>, _training: bool) -> Result<Var<'t>> {
                self.pool.call(x)
            }
            fn max_pool_window(&self) -> Option<PoolWindow> {
                let a = &self.pool.args;
                (self.pool.kind == Kind::Max)
                    .then(|| (a.pool_size.pair(), self.pool.strides().pair(), a.padding))
            }
            fn output_shape(&self, input_shape: &[usize]) -> Result<Vec<usize>> {
                self.pool.output_shape(input_shape)
            }
            fn config(&self) -> LayerConfig {
                self.pool.base.config(self.pool.class(), &self.pool.args)
            }
        }
    };
}

pooling_layer!(
    /// Max pooling over NHWC inputs: `y[n, i, j, c]` is the largest element of the window at
    /// `(i s_h - p_t, j s_w - p_l)` (padding never wins); the gradient goes to that element.
    ///
    /// Shapes: `[batch, H, W, C] -> [batch, out_h, out_w, C]`, `out` as for
    /// [`Conv2D`](crate::Conv2D) with the pool as the window.
    ///
    /// ```
    /// use gradus_layers::{Layer, LayerExt, MaxPooling2D};
    /// use gradus_tensor::Tensor;
    ///
    /// let pool = MaxPooling2D::new(2).built(&[26, 26, 32], 0)?;
    /// assert_eq!(pool.output_shape(&[26, 26, 32])?, vec![13, 13, 32]);
    /// let small = MaxPooling2D::new(2).built(&[2, 2, 1], 0)?;
    /// let x = Tensor::from_vec(vec![1.0, 5.0, 3.0, 2.0], &[1, 2, 2, 1])?;
    /// assert_eq!(small.predict(&x)?.to_vec(), vec![5.0]);
    /// # Ok::<(), gradus_layers::LayerError>(())
    /// ```
    ///
    /// # Errors
    /// `build` fails for zero pool lengths or strides, an input shape that is not
    /// `[H, W, C]` or a window larger than a `"valid"` input; `call` for other channel counts.
    MaxPooling2D,
    Kind::Max,
    "max_pooling2d"
);

pooling_layer!(
    /// Average pooling over NHWC inputs: `y[n, i, j, c]` is the mean of the window's elements
    /// that lie inside the input (with `"same"` padding the padded ones are not counted, as
    /// Keras); the gradient is spread equally over them.
    ///
    /// Shapes: `[batch, H, W, C] -> [batch, out_h, out_w, C]`.
    ///
    /// ```
    /// use gradus_layers::{AveragePooling2D, Layer, LayerExt};
    /// use gradus_tensor::Tensor;
    ///
    /// let pool = AveragePooling2D::new(2).built(&[2, 2, 1], 0)?;
    /// let x = Tensor::from_vec(vec![1.0, 5.0, 3.0, 3.0], &[1, 2, 2, 1])?;
    /// assert_eq!(pool.predict(&x)?.to_vec(), vec![3.0]);
    /// # Ok::<(), gradus_layers::LayerError>(())
    /// ```
    ///
    /// # Errors
    /// As [`MaxPooling2D`].
    AveragePooling2D,
    Kind::Average,
    "average_pooling2d"
);
