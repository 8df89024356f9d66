//! `Dense`: `y = activation(x @ kernel + bias)`.

use gradus_autograd::{Tape, Var, Variable};
use gradus_tensor::{Rng, Tensor, parallel};
use serde::{Deserialize, Serialize};

use crate::activation::Activation;
use crate::base::{Base, positive, sum_penalties};
use crate::error::Result;
use crate::initializers::Initializer;
use crate::layer::{Layer, LayerConfig};
use crate::regularizers::Regularizer;

/// Keras' arguments of [`Dense`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct DenseArgs {
    units: usize,
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

pub(crate) fn yes() -> bool {
    true
}

pub(crate) fn zeros() -> Initializer {
    Initializer::Zeros
}

/// A densely connected layer: `y = activation(x @ kernel + bias)` over the last axis.
///
/// Shapes: input `[batch, ..., in]`, kernel `[in, units]`, bias `[units]`, output
/// `[batch, ..., units]`. Defaults as Keras: no activation, a bias, kernel `glorot_uniform`,
/// bias `zeros`, no regularizers.
///
/// The product, the bias and a `linear`/`relu`/`sigmoid`/`tanh`/`softmax` activation run as
/// one recorded operation: one matrix product, then one pass over the output adding the bias
/// and applying the activation; its backward rule takes the activation's derivative from the
/// output and makes the two products `dz kernel^T` and `x^T dz`.
///
/// ```
/// use gradus_layers::{Dense, Layer, LayerExt, L2};
/// use gradus_tensor::{Rng, Tensor};
///
/// let mut layer = Dense::new(3).activation("softmax").kernel_regularizer(L2::new(0.01));
/// layer.build(&[4], &mut Rng::seed_from_u64(0))?;
/// let y = layer.predict(&Tensor::ones(&[2, 4]))?;
/// assert_eq!(y.shape(), &[2, 3]);
/// assert!((y.sum_all() - 2.0).abs() < 1e-6);
/// assert_eq!(layer.variables()[0].name(), "dense/kernel");
/// # Ok::<(), gradus_layers::LayerError>(())
/// ```
///
/// # Errors
/// `build` fails for `units == 0`, an unknown activation / initializer / regularizer name given to
/// a builder method, or an input shape of rank 0; `call` fails for inputs whose last axis is not
/// the built one.
#[derive(Debug, Clone)]
pub struct Dense {
    base: Base,
    args: DenseArgs,
    kernel: Option<Variable>,
    bias: Option<Variable>,
}

impl Dense {
    /// A dense layer of `units` outputs with Keras' defaults.
    pub fn new(units: usize) -> Dense {
        Dense::from_args(
            DenseArgs {
                units,
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

    pub(crate) fn from_args(args: DenseArgs, name: Option<String>) -> Dense {
        let mut base = Base::new("dense");
        if let Some(n) = name {
            base.rename(&n);
        }
        Dense {
            base,
            args,
            kernel: None,
            bias: None,
        }
    }

    setter!(
        /// The activation, by value ([`Activation::Relu`]) or by name (`"relu"`).
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
        /// A penalty on the kernel, by value (`L2::new(0.01)`) or by name (`"l2"`).
        kernel_regularizer: Option<Regularizer>
    );

    setter!(
        /// A penalty on the bias, by value or by name.
        bias_regularizer: Option<Regularizer>
    );

    setter!(
        /// The layer's name (default `"dense"`); see [`Layer::set_name`].
        with_name
    );

    /// The number of output units.
    pub fn units(&self) -> usize {
        self.args.units
    }

    /// The kernel variable `[in, units]`, once built.
    pub fn kernel(&self) -> Option<&Variable> {
        self.kernel.as_ref()
    }

    /// The bias variable `[units]`, once built (and if `use_bias`).
    pub fn bias(&self) -> Option<&Variable> {
        self.bias.as_ref()
    }
}

impl Layer for Dense {
    fn splits_over_batch(&self, _training: bool) -> bool {
        true
    }

    fn class_name(&self) -> &'static str {
        "Dense"
    }

    fn name(&self) -> &str {
        &self.base.name
    }

    fn set_name(&mut self, name: &str) -> Result<()> {
        self.base.set_name(name)
    }

    fn build(&mut self, input_shape: &[usize], rng: &mut Rng) -> Result<()> {
        self.base.check_pending()?;
        let units = positive("Dense units", self.args.units)?;
        for r in [self.args.kernel_regularizer, self.args.bias_regularizer]
            .into_iter()
            .flatten()
        {
            r.validate()?;
        }
        let Some(&input_dim) = input_shape.last() else {
            return Err(self
                .base
                .shape_error("[..., features] (rank >= 1)", input_shape));
        };
        let kernel = self
            .args
            .kernel_initializer
            .init(&[input_dim, units], rng)?;
        self.kernel = Some(Variable::new(self.base.var_name("kernel"), kernel));
        self.bias = if self.args.use_bias {
            let b = self.args.bias_initializer.init(&[units], rng)?;
            Some(Variable::new(self.base.var_name("bias"), b))
        } else {
            None
        };
        self.base.input_shape = Some(input_shape.to_vec());
        Ok(())
    }

    fn built_input_shape(&self) -> Option<&[usize]> {
        self.base.input_shape.as_deref()
    }

    fn call<'t>(&self, x: &Var<'t>, _training: bool) -> Result<Var<'t>> {
        self.base.built()?;
        let kernel = self.kernel.as_ref().expect("built");
        let input_dim = kernel.shape()[0];
        let shape = x.shape().to_vec();
        if shape.len() < 2 || shape.last() != Some(&input_dim) {
            return Err(self
                .base
                .shape_error(format!("[batch, ..., {input_dim}]"), &shape));
        }
        let units = self.args.units;
        let rows: usize = shape[..shape.len() - 1].iter().product();
        let flat = if shape.len() == 2 {
            x.clone()
        } else {
            x.reshape(&[rows, input_dim])?
        };
        let act = self.args.activation;
        let fused = if act.fusable() {
            act
        } else {
            Activation::Linear
        };
        let k = x.param(kernel);
        let b = self.bias.as_ref().map(|b| x.param(b));
        let mut y = dense_op(&flat, &k, b.as_ref(), fused)?;
        if !act.fusable() {
            y = act.apply(&y)?;
        }
        if shape.len() == 2 {
            Ok(y)
        } else {
            let mut out = shape;
            *out.last_mut().expect("rank >= 2") = units;
            Ok(y.reshape(&out)?)
        }
    }

    fn output_shape(&self, input_shape: &[usize]) -> Result<Vec<usize>> {
        let Some((_, lead)) = input_shape.split_last() else {
            return Err(self
                .base
                .shape_error("[..., features] (rank >= 1)", input_shape));
        };
        if let Some(k) = &self.kernel
            && input_shape.last() != Some(&k.shape()[0])
        {
            return Err(self
                .base
                .shape_error(format!("[..., {}]", k.shape()[0]), input_shape));
        }
        let mut out = lead.to_vec();
        out.push(self.args.units);
        Ok(out)
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

/// Adds `bias` to every row of `y` (rows of `bias.len()`), then applies `act` row by row.
///
/// On x86-64 CPUs with AVX2 this runs compiled for AVX2, 8 lanes wide where the loops vectorize
/// (the crate itself is built for baseline x86-64, 4 lanes): the same operations in the same
/// order, so the same bits. It is the epilogue of every convolution row and Dense output.
pub(crate) fn bias_act_rows(y: &mut [f32], bias: Option<&[f32]>, act: Activation, width: usize) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2.
        return unsafe { bias_act_rows_avx2(y, bias, act, width) };
    }
    bias_act_rows_body(y, bias, act, width);
}

/// [`bias_act_rows_body`] compiled for AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn bias_act_rows_avx2(y: &mut [f32], bias: Option<&[f32]>, act: Activation, width: usize) {
    bias_act_rows_body(y, bias, act, width);
}

/// The body of [`bias_act_rows`].
#[inline(always)]
fn bias_act_rows_body(y: &mut [f32], bias: Option<&[f32]>, act: Activation, width: usize) {
    if width == 0 {
        return;
    }
    match (bias, act) {
        (Some(b), Activation::Relu) => {
            for row in y.chunks_exact_mut(width) {
                row.iter_mut()
                    .zip(b)
                    .for_each(|(v, b)| *v = (*v + b).max(0.0));
            }
        }
        (Some(b), _) => {
            for row in y.chunks_exact_mut(width) {
                row.iter_mut().zip(b).for_each(|(v, b)| *v += b);
                act.forward_rows(row, width);
            }
        }
        (None, _) => act.forward_rows(y, width),
    }
}

/// `dz = g act'(z)` from the output `y` of a fused activation, as a contiguous tensor of `g`'s
/// shape (`g` itself, uncopied, for `linear`).
pub(crate) fn preactivation_grad(
    act: Activation,
    y: &Tensor,
    g: &Tensor,
    width: usize,
) -> gradus_autograd::Result<Tensor> {
    let g = g.to_contiguous();
    if act == Activation::Linear {
        return Ok(g);
    }
    let y = y.to_contiguous();
    let (ys, gs) = (
        y.as_slice().expect("contiguous"),
        g.as_slice().expect("contiguous"),
    );
    let mut dz = gradus_tensor::buffer::take(gs.len());
    if width > 0 {
        let grain = parallel::grain(1 << 14, width);
        parallel::for_row_blocks(&mut dz, width, grain, |first, block| {
            let at = first * width;
            let span = at..at + block.len();
            act.backward_rows(&ys[span.clone()], &gs[span], width, block);
        });
    }
    Ok(Tensor::from_vec(dz, g.shape())?)
}

/// The column sums of a `[rows, width]` row-major matrix, summed in fixed blocks of rows (in
/// parallel) whose partial sums are then added in order: the same bits for any thread count.
pub(crate) fn column_sums(dz: &[f32], width: usize) -> Vec<f32> {
    const BLOCK_ROWS: usize = 2048;
    let mut sums = vec![0.0f32; width];
    if width == 0 {
        return sums;
    }
    let blocks = dz.len().div_ceil(BLOCK_ROWS * width);
    let mut partials = vec![0.0f32; blocks * width];
    parallel::for_row_blocks(&mut partials, width, 2, |first, part| {
        for (b, acc) in part.chunks_exact_mut(width).enumerate() {
            let start = (first + b) * BLOCK_ROWS * width;
            let end = dz.len().min(start + BLOCK_ROWS * width);
            for row in dz[start..end].chunks_exact(width) {
                acc.iter_mut().zip(row).for_each(|(s, v)| *s += v);
            }
        }
    });
    for part in partials.chunks_exact(width) {
        sums.iter_mut().zip(part).for_each(|(s, v)| *s += v);
    }
    sums
}

/// `act(x @ k + b)` for `x: [n, in]`, `k: [in, units]`, `b: [units]`, with a fusable `act`, as
/// one recorded operation.
fn dense_op<'t>(x: &Var<'t>, k: &Var<'t>, b: Option<&Var<'t>>, act: Activation) -> Result<Var<'t>> {
    let units = k.shape()[1];
    let mut y = x.value().matmul(k.value())?;
    let bias = b.map(|b| b.value().to_contiguous());
    bias_act_rows(
        y.as_slice_mut(),
        bias.as_ref().and_then(Tensor::as_slice),
        act,
        units,
    );
    let inputs: Vec<&Var<'t>> = [x, k].into_iter().chain(b).collect();
    let (xv, kv, yv) = (x.value().clone(), k.value().clone(), y.clone());
    Ok(Var::custom("dense", &inputs, y, move |g, needs| {
        let dz = preactivation_grad(act, &yv, g, units)?;
        let dx = if needs[0] {
            Some(dz.matmul_t(&kv, false, true)?)
        } else {
            None
        };
        let dk = if needs[1] {
            Some(xv.matmul_t(&dz, true, false)?)
        } else {
            None
        };
        let mut grads = vec![dx, dk];
        if needs.len() > 2 {
            grads.push(if needs[2] {
                let sums = column_sums(dz.as_slice().expect("contiguous"), units);
                Some(Tensor::from_vec(sums, &[units])?)
            } else {
                None
            });
        }
        Ok(grads)
    })?)
}
