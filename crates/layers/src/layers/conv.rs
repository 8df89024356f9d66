//! `Conv2D`: 2-D convolution over NHWC inputs (direct kernels for small windows, im2col and one
//! matrix product over the batch for larger ones).

use gradus_autograd::{Tape, Var, Variable};
use gradus_tensor::{
    Conv2dGeometry, DIRECT_MAX_PATCH, FUSED_MAX_POOL_WINDOW, Padding, Rng, Tensor,
    conv2d_backward_with, conv2d_max_pool_backward_params, conv2d_max_pool_with, conv2d_with,
};
use serde::{Deserialize, Serialize};

use super::dense::{bias_act_rows, preactivation_grad, yes, zeros};
use crate::activation::Activation;
use crate::base::{Base, positive, sum_penalties};
use crate::error::{Result, invalid};
use crate::initializers::Initializer;
use crate::layer::{Layer, LayerConfig};
use crate::regularizers::Regularizer;
use crate::spatial::{IntoPadding, Size2, padding_serde, valid};

fn one() -> Size2 {
    Size2(1, 1)
}

/// Keras' arguments of [`Conv2D`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Conv2DArgs {
    filters: usize,
    kernel_size: Size2,
    #[serde(default = "one")]
    strides: Size2,
    #[serde(default = "valid", with = "padding_serde")]
    padding: Padding,
    #[serde(default)]
    activation: Activation,
    #[serde(default = "yes")]
    use_bias: bool,
    #[serde(default)]
    kernel_initializer: Initializer,
    #[serde(default = "zeros")]
    bias_initializer: Initializer,
    #[serde(default)]
    kernel_regularizer: Option<Regularizer>,
    #[serde(default)]
    bias_regularizer: Option<Regularizer>,
}

/// A 2-D convolution layer over channels-last images (Keras' `Conv2D`, cross-correlation):
/// `y[n, i, j, f] = act(b[f] + sum_{di, dj, c} x[n, i s_h + di - p_t, j s_w + dj - p_l, c]
/// k[di, dj, c, f])`.
///
/// Shapes: input `[batch, H, W, C]`, kernel `[k_h, k_w, C, filters]`, bias `[filters]`, output
/// `[batch, out_h, out_w, filters]` with `out = floor((in - k) / s) + 1` for `"valid"` padding
/// and `ceil(in / s)` for `"same"` (extra padding at the bottom/right, as Keras). Defaults:
/// strides 1, `"valid"`, no activation, a bias, `glorot_uniform` kernel, `zeros` bias.
///
/// Windows of at most `DIRECT_MAX_PATCH` values (a 3x3 kernel over up to 3 channels) are
/// computed directly from the input rows, one output row at a time, with the bias and a fusable
/// activation applied while the row is in cache; the backward pass forms `dz = dy f'(z)` row by
/// row and takes the kernel, bias and (when needed) input gradients from it in the same pass.
/// Larger windows unfold every window of the batch (im2col) and make one matrix product with
/// the kernel seen as `[k_h k_w C, filters]`.
///
/// ```
/// use gradus_layers::{Conv2D, Layer, LayerExt};
/// use gradus_tensor::Tensor;
///
/// let conv = Conv2D::new(32, 3).activation("relu").built(&[28, 28, 1], 0)?;
/// assert_eq!(conv.count_params(), 320);
/// assert_eq!(conv.predict(&Tensor::ones(&[2, 28, 28, 1]))?.shape(), &[2, 26, 26, 32]);
/// let same = Conv2D::new(8, (3, 3)).strides(2).padding("same").built(&[28, 28, 1], 0)?;
/// assert_eq!(same.output_shape(&[28, 28, 1])?, vec![14, 14, 8]);
/// # Ok::<(), gradus_layers::LayerError>(())
/// ```
///
/// # Errors
/// `build` fails for zero filters, kernel lengths or strides, unknown names given to builder
/// methods, an input shape that is not `[H, W, C]`, or a kernel larger than a `"valid"` input;
/// `call` fails for inputs that are not `[batch, H, W, C]` with the built `C`.
#[derive(Debug, Clone)]
pub struct Conv2D {
    base: Base,
    args: Conv2DArgs,
    kernel: Option<Variable>,
    bias: Option<Variable>,
}

impl Conv2D {
    /// A convolution with `filters` output channels and a `kernel_size` window (one number for a
    /// square window, or `(k_h, k_w)`), with Keras' defaults.
    pub fn new(filters: usize, kernel_size: impl Into<Size2>) -> Conv2D {
        Conv2D::from_args(
            Conv2DArgs {
                filters,
                kernel_size: kernel_size.into(),
                strides: one(),
                padding: Padding::Valid,
                activation: Activation::Linear,
                use_bias: true,
                kernel_initializer: Initializer::GlorotUniform,
                bias_initializer: Initializer::Zeros,
                kernel_regularizer: None,
                bias_regularizer: None,
            },
            None,
        )
    }

    pub(crate) fn from_args(args: Conv2DArgs, name: Option<String>) -> Conv2D {
        let mut base = Base::new("conv2d");
        if let Some(n) = name {
            base.rename(&n);
        }
        Conv2D {
            base,
            args,
            kernel: None,
            bias: None,
        }
    }

    /// The strides (Keras: 1).
    pub fn strides(mut self, strides: impl Into<Size2>) -> Self {
        self.args.strides = strides.into();
        self
    }

    /// The padding, [`Padding::Valid`] (Keras' default) or [`Padding::Same`], or by name.
    pub fn padding(mut self, padding: impl IntoPadding) -> Self {
        if let Some(p) = self.base.keep(padding.into_padding()) {
            self.args.padding = p;
        }
        self
    }

    setter!(
        /// The activation, by value or by name.
        activation: Activation
    );

    /// Whether to add a bias (Keras: true).
    pub fn use_bias(mut self, use_bias: bool) -> Self {
        self.args.use_bias = use_bias;
        self
    }

    setter!(
        /// The kernel initializer, by value or by name (Keras: `glorot_uniform`).
        kernel_initializer: Initializer
    );

    setter!(
        /// The bias initializer, by value or by name (Keras: `zeros`).
        bias_initializer: Initializer
    );

    setter!(
        /// A penalty on the kernel, by value or by name.
        kernel_regularizer: Option<Regularizer>
    );

    setter!(
        /// A penalty on the bias, by value or by name.
        bias_regularizer: Option<Regularizer>
    );

    setter!(
        /// The layer's name (default `"conv2d"`).
        with_name
    );

    /// The kernel variable `[k_h, k_w, C, filters]`, once built.
    pub fn kernel(&self) -> Option<&Variable> {
        self.kernel.as_ref()
    }

    /// The bias variable `[filters]`, once built (and if `use_bias`).
    pub fn bias(&self) -> Option<&Variable> {
        self.bias.as_ref()
    }

    fn geometry(&self, batch_shape: &[usize]) -> Result<Conv2dGeometry> {
        let a = &self.args;
        Conv2dGeometry::new(
            batch_shape,
            a.kernel_size.pair(),
            a.strides.pair(),
            a.padding,
        )
        .map_err(|e| {
            self.base
                .shape_error(format!("an input the window fits ({e})"), &batch_shape[1..])
        })
    }
}

impl Layer for Conv2D {
    fn splits_over_batch(&self, _training: bool) -> bool {
        true
    }

    fn gains_from_shards(&self) -> bool {
        true
    }

    fn class_name(&self) -> &'static str {
        "Conv2D"
    }

    fn name(&self) -> &str {
        &self.base.name
    }

    fn set_name(&mut self, name: &str) -> Result<()> {
        self.base.set_name(name)
    }

    fn build(&mut self, input_shape: &[usize], rng: &mut Rng) -> Result<()> {
        self.base.check_pending()?;
        let a = &self.args;
        let filters = positive("Conv2D filters", a.filters)?;
        if a.kernel_size.0 == 0 || a.kernel_size.1 == 0 || a.strides.0 == 0 || a.strides.1 == 0 {
            return Err(invalid(
                "Conv2D",
                format!(
                    "expected positive kernel_size and strides, got kernel_size {:?} and strides {:?}",
                    a.kernel_size.pair(),
                    a.strides.pair()
                ),
            ));
        }
        for r in [a.kernel_regularizer, a.bias_regularizer]
            .into_iter()
            .flatten()
        {
            r.validate()?;
        }
        let &[h, w, c] = input_shape else {
            return Err(self
                .base
                .shape_error("[height, width, channels]", input_shape));
        };
        self.geometry(&[1, h, w, c])?;
        let (kh, kw) = a.kernel_size.pair();
        let kernel = a.kernel_initializer.init(&[kh, kw, c, filters], rng)?;
        let bias = if a.use_bias {
            Some(a.bias_initializer.init(&[filters], rng)?)
        } else {
            None
        };
        self.kernel = Some(Variable::new(self.base.var_name("kernel"), kernel));
        self.bias = bias.map(|b| Variable::new(self.base.var_name("bias"), b));
        self.base.input_shape = Some(input_shape.to_vec());
        Ok(())
    }

    fn built_input_shape(&self) -> Option<&[usize]> {
        self.base.input_shape.as_deref()
    }

    fn call<'t>(&self, x: &Var<'t>, _training: bool) -> Result<Var<'t>> {
        let built = self.base.built()?;
        let c = built[2];
        let shape = x.shape();
        if shape.len() != 4 || shape[3] != c {
            return Err(self
                .base
                .shape_error(format!("[batch, height, width, {c}]"), shape));
        }
        let geom = self.geometry(shape)?;
        let k = x.param(self.kernel.as_ref().expect("built"));
        let b = self.bias.as_ref().map(|b| x.param(b));
        let act = self.args.activation;
        let fused = if act.fusable() {
            act
        } else {
            Activation::Linear
        };
        let y = conv_op(x, &k, b.as_ref(), fused, (geom, self.args.padding))?;
        if act.fusable() { Ok(y) } else { act.apply(&y) }
    }

    fn call_with_next<'t>(
        &self,
        next: &dyn Layer,
        x: &Var<'t>,
        _training: bool,
    ) -> Option<Result<Var<'t>>> {
        // Fused only where nothing needs the full convolution output: no input gradient, and an
        // elementwise activation whose derivative the pooled values give.
        let (pool, strides, padding) = next.max_pool_window()?;
        let act = self.args.activation;
        if x.is_tracked() || !act.fusable() || act == Activation::Softmax {
            return None;
        }
        let built = self.base.input_shape.as_deref()?;
        let filters = self.args.filters;
        let shape = x.shape();
        if shape.len() != 4 || shape[3] != built[2] || next.built_input_shape()?.get(2)? != &filters
        {
            return None; // the separate calls report the error
        }
        let conv = self.geometry(shape).ok()?;
        let pooling =
            Conv2dGeometry::new(&conv.output_shape(filters), pool, strides, padding).ok()?;
        if conv.patch_len() > DIRECT_MAX_PATCH || pool.0 * pool.1 > FUSED_MAX_POOL_WINDOW {
            return None;
        }
        let k = x.param(self.kernel.as_ref()?);
        let b = self.bias.as_ref().map(|b| x.param(b));
        Some(conv_pool_op(x, &k, b.as_ref(), act, (conv, pooling)))
    }

    fn output_shape(&self, input_shape: &[usize]) -> Result<Vec<usize>> {
        let &[h, w, c] = input_shape else {
            return Err(self
                .base
                .shape_error("[height, width, channels]", input_shape));
        };
        let g = self.geometry(&[1, h, w, c])?;
        Ok(vec![g.out_h, g.out_w, self.args.filters])
    }

    fn variables(&self) -> Vec<Variable> {
        self.kernel.iter().chain(&self.bias).cloned().collect()
    }

    fn config(&self) -> LayerConfig {
        self.base.config(self.class_name(), &self.args)
    }

    fn regularization_loss<'t>(&self, tape: Option<&'t Tape>) -> Result<Option<Var<'t>>> {
        if self.args.kernel_regularizer.is_none() && self.args.bias_regularizer.is_none() {
            return Ok(None);
        }
        self.base.built()?;
        sum_penalties(
            tape,
            &[
                (self.args.kernel_regularizer, self.kernel.as_ref()),
                (self.args.bias_regularizer, self.bias.as_ref()),
            ],
        )
    }
}

/// `act(conv2d(x, k) + b)` as one recorded operation: the convolution adds the bias and applies
/// the activation to each block of output rows while it is in cache.
fn conv_op<'t>(
    x: &Var<'t>,
    k: &Var<'t>,
    b: Option<&Var<'t>>,
    act: Activation,
    (g, padding): (Conv2dGeometry, Padding),
) -> Result<Var<'t>> {
    let filters = k.shape()[3];
    let bias = b.map(|b| b.value().to_contiguous());
    let y = conv2d_with(
        x.value(),
        k.value(),
        (g.stride_h, g.stride_w),
        padding,
        |rows| bias_act_rows(rows, bias.as_ref().and_then(Tensor::as_slice), act, filters),
    )?;
    let inputs: Vec<&Var<'t>> = [x, k].into_iter().chain(b).collect();
    let saved_y = y.clone();
    let saved_x = x.value().clone();
    let saved_k = k.value().clone();
    Ok(Var::custom("conv2d", &inputs, y, move |grad, needs| {
        // dz = grad f'(z) is formed row block by row block inside the backward kernel, never in
        // full; the input gradient only when asked for.
        let ys = saved_y.to_contiguous();
        let y = ys.as_slice().expect("contiguous");
        let kernel = needs[0].then_some(&saved_k);
        let (dx, dk, db) = conv2d_backward_with(&saved_x, kernel, grad, &g, |first, rows| {
            let at = first * filters;
            act.backward_rows_in_place(&y[at..at + rows.len()], filters, rows);
        })?;
        let mut grads = vec![dx, needs[1].then_some(dk)];
        if needs.len() > 2 {
            grads.push(needs[2].then_some(db));
        }
        Ok(grads)
    })?)
}

/// `max_pool2d(act(conv2d(x, k) + b))` as one recorded operation (see
/// [`conv2d_max_pool_with`]): for inputs that need no gradient, with an elementwise activation.
fn conv_pool_op<'t>(
    x: &Var<'t>,
    k: &Var<'t>,
    b: Option<&Var<'t>>,
    act: Activation,
    (conv, pool): (Conv2dGeometry, Conv2dGeometry),
) -> Result<Var<'t>> {
    let filters = k.shape()[3];
    let bias = b.map(|b| b.value().to_contiguous());
    let (y, winners) = conv2d_max_pool_with(x.value(), k.value(), &conv, &pool, |row| {
        bias_act_rows(row, bias.as_ref().and_then(Tensor::as_slice), act, filters)
    })?;
    let inputs: Vec<&Var<'t>> = [x, k].into_iter().chain(b).collect();
    let (saved_x, saved_y) = (x.value().clone(), y.clone());
    Ok(Var::custom(
        "conv2d_max_pool",
        &inputs,
        y,
        move |grad, needs| {
            // A winner's convolution output is its pooled value, so f'(z) there comes from it.
            let dz = preactivation_grad(act, &saved_y, grad, filters)?;
            let (dk, db) = conv2d_max_pool_backward_params(&saved_x, &dz, &winners, &conv, &pool)?;
            let mut grads = vec![None, needs[1].then_some(dk)];
            if needs.len() > 2 {
                grads.push(needs[2].then_some(db));
            }
            Ok(grads)
        },
    )?)
}
