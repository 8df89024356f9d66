//! `LSTM`: a long short-term memory layer, as one fused operation over the whole sequence.

use gradus_autograd::{Tape, Var, Variable};
use gradus_tensor::{Rng, Tensor};
use serde::{Deserialize, Serialize};

use super::dense::{column_sums, yes, zeros};
use crate::activation::Activation;
use crate::base::{Base, positive, sum_penalties};
use crate::error::{Result, invalid};
use crate::fastmath;
use crate::gemm::{Mat, gemm};
use crate::initializers::Initializer;
use crate::layer::{Layer, LayerConfig};
use crate::regularizers::Regularizer;

fn tanh_act() -> Activation {
    Activation::Tanh
}

fn sigmoid_act() -> Activation {
    Activation::Sigmoid
}

fn orthogonal() -> Initializer {
    Initializer::Orthogonal { gain: 1.0 }
}

/// Keras' arguments of [`LSTM`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct LstmArgs {
    units: usize,
    #[serde(default = "tanh_act")]
    activation: Activation,
    #[serde(default = "sigmoid_act")]
    recurrent_activation: Activation,
    #[serde(default = "yes")]
    use_bias: bool,
    #[serde(default)]
    kernel_initializer: Initializer,
    #[serde(default = "orthogonal")]
    recurrent_initializer: Initializer,
    #[serde(default = "zeros")]
    bias_initializer: Initializer,
    #[serde(default = "yes")]
    unit_forget_bias: bool,
    #[serde(default)]
    kernel_regularizer: Option<Regularizer>,
    #[serde(default)]
    recurrent_regularizer: Option<Regularizer>,
    #[serde(default)]
    bias_regularizer: Option<Regularizer>,
    #[serde(default)]
    return_sequences: bool,
}

/// A long short-term memory layer (Keras' `LSTM`), with gates in Keras' order `i, f, c, o`:
///
/// ```text
/// z_t = x_t W + h_{t-1} U + b                       (z split into z_i, z_f, z_c, z_o)
/// i = s(z_i)   f = s(z_f)   g = a(z_c)   o = s(z_o)  (s = recurrent_activation, a = activation)
/// c_t = f c_{t-1} + i g      h_t = o a(c_t)          (h_{-1} = c_{-1} = 0)
/// ```
///
/// Shapes: input `[batch, timesteps, features]`, kernel `W: [features, 4 units]`, recurrent
/// kernel `U: [units, 4 units]`, bias `[4 units]`; output `[batch, units]` (the last `h`) or,
/// with `return_sequences`, `[batch, timesteps, units]`. Defaults as Keras: `tanh` and
/// `sigmoid`, `glorot_uniform` kernel, `orthogonal` recurrent kernel, `zeros` bias with ones on
/// the forget gate (`unit_forget_bias`). The activations may be `tanh`, `sigmoid`, `relu` or
/// `linear`.
///
/// The whole sequence is one recorded operation: the input projection `x W + b` of every step is
/// one matrix product; each step then makes one product `h_{t-1} U` and one fused pass over the
/// four gates. The backward pass through time is written by hand: per step one fused pass and
/// one product `dz_t U^T`, then one product each for `dW`, `dU` and `dx` over all steps.
///
/// ```
/// use gradus_layers::{LSTM, Layer, LayerExt};
/// use gradus_tensor::Tensor;
///
/// let lstm = LSTM::new(64).built(&[28, 28], 0)?;
/// assert_eq!(lstm.count_params(), 23808);
/// assert_eq!(lstm.predict(&Tensor::ones(&[2, 28, 28]))?.shape(), &[2, 64]);
/// let seq = LSTM::new(8).return_sequences(true).built(&[5, 3], 0)?;
/// assert_eq!(seq.output_shape(&[5, 3])?, vec![5, 8]);
/// # Ok::<(), gradus_layers::LayerError>(())
/// ```
///
/// # Errors
/// `build` fails for `units == 0`, an unsupported activation, unknown names given to builder
/// methods, or an input shape that is not `[timesteps, features]`; `call` for inputs that are not
/// `[batch, timesteps, features]` with the built `features`.
#[derive(Debug, Clone)]
pub struct LSTM {
    base: Base,
    args: LstmArgs,
    kernel: Option<Variable>,
    recurrent_kernel: Option<Variable>,
    bias: Option<Variable>,
}

impl LSTM {
    /// An LSTM of `units` with Keras' defaults.
    pub fn new(units: usize) -> LSTM {
        LSTM::from_args(
            LstmArgs {
                units,
                activation: Activation::Tanh,
                recurrent_activation: Activation::Sigmoid,
                use_bias: true,
                kernel_initializer: Initializer::GlorotUniform,
                recurrent_initializer: orthogonal(),
                bias_initializer: Initializer::Zeros,
                unit_forget_bias: true,
                kernel_regularizer: None,
                recurrent_regularizer: None,
                bias_regularizer: None,
                return_sequences: false,
            },
            None,
        )
    }

    pub(crate) fn from_args(args: LstmArgs, name: Option<String>) -> LSTM {
        let mut base = Base::new("lstm");
        if let Some(n) = name {
            base.rename(&n);
        }
        LSTM {
            base,
            args,
            kernel: None,
            recurrent_kernel: None,
            bias: None,
        }
    }

    /// Whether to return the whole sequence of `h` (Keras: false, only the last).
    pub fn return_sequences(mut self, yes: bool) -> Self {
        self.args.return_sequences = yes;
        self
    }

    /// Whether to add a bias (Keras: true).
    pub fn use_bias(mut self, use_bias: bool) -> Self {
        self.args.use_bias = use_bias;
        self
    }

    /// Whether the forget gate's bias starts at one (Keras: true).
    pub fn unit_forget_bias(mut self, yes: bool) -> Self {
        self.args.unit_forget_bias = yes;
        self
    }

    setter!(
        /// The cell activation `a` (Keras: `tanh`).
        activation: Activation
    );
    setter!(
        /// The gate activation `s` (Keras: `sigmoid`).
        recurrent_activation: Activation
    );
    setter!(
        /// The kernel initializer (Keras: `glorot_uniform`).
        kernel_initializer: Initializer
    );
    setter!(
        /// The recurrent kernel initializer (Keras: `orthogonal`).
        recurrent_initializer: Initializer
    );
    setter!(
        /// The bias initializer (Keras: `zeros`; the forget gate gets ones with
        /// `unit_forget_bias`).
        bias_initializer: Initializer
    );
    setter!(
        /// A penalty on the kernel.
        kernel_regularizer: Option<Regularizer>
    );
    setter!(
        /// A penalty on the recurrent kernel.
        recurrent_regularizer: Option<Regularizer>
    );
    setter!(
        /// A penalty on the bias.
        bias_regularizer: Option<Regularizer>
    );

    setter!(
        /// The layer's name (default `"lstm"`).
        with_name
    );
}

impl Layer for LSTM {
    fn class_name(&self) -> &'static str {
        "LSTM"
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
        let units = positive("LSTM units", a.units)?;
        for (what, act) in [
            ("activation", a.activation),
            ("recurrent_activation", a.recurrent_activation),
        ] {
            if Cell::of(act).is_none() {
                return Err(invalid(
                    format!("LSTM {what}"),
                    format!("expected tanh, sigmoid, relu or linear, got {act}"),
                ));
            }
        }
        for r in [
            a.kernel_regularizer,
            a.recurrent_regularizer,
            a.bias_regularizer,
        ]
        .into_iter()
        .flatten()
        {
            r.validate()?;
        }
        let &[_, features] = input_shape else {
            return Err(self.base.shape_error("[timesteps, features]", input_shape));
        };
        let kernel = a.kernel_initializer.init(&[features, 4 * units], rng)?;
        let recurrent = a.recurrent_initializer.init(&[units, 4 * units], rng)?;
        let bias = if a.use_bias {
            Some(if a.unit_forget_bias {
                let mut b = a.bias_initializer.init(&[units], rng)?.to_vec();
                b.extend(std::iter::repeat_n(1.0, units));
                b.extend(a.bias_initializer.init(&[2 * units], rng)?.to_vec());
                Tensor::from_vec(b, &[4 * units])?
            } else {
                a.bias_initializer.init(&[4 * units], rng)?
            })
        } else {
            None
        };
        self.kernel = Some(Variable::new(self.base.var_name("kernel"), kernel));
        self.recurrent_kernel = Some(Variable::new(
            self.base.var_name("recurrent_kernel"),
            recurrent,
        ));
        self.bias = bias.map(|b| Variable::new(self.base.var_name("bias"), b));
        self.base.input_shape = Some(input_shape.to_vec());
        Ok(())
    }

    fn built_input_shape(&self) -> Option<&[usize]> {
        self.base.input_shape.as_deref()
    }

    fn call<'t>(&self, x: &Var<'t>, _training: bool) -> Result<Var<'t>> {
        let built = self.base.built()?;
        let features = built[1];
        let shape = x.shape();
        if shape.len() != 3 || shape[2] != features || shape[1] == 0 {
            return Err(self
                .base
                .shape_error(format!("[batch, timesteps >= 1, {features}]"), shape));
        }
        let w = x.param(self.kernel.as_ref().expect("built"));
        let r = x.param(self.recurrent_kernel.as_ref().expect("built"));
        let b = self.bias.as_ref().map(|b| x.param(b));
        let cells = (
            Cell::of(self.args.recurrent_activation).expect("checked by build"),
            Cell::of(self.args.activation).expect("checked by build"),
        );
        lstm_op(x, &w, &r, b.as_ref(), cells, self.args.return_sequences)
    }

    fn output_shape(&self, input_shape: &[usize]) -> Result<Vec<usize>> {
        let &[t, _] = input_shape else {
            return Err(self.base.shape_error("[timesteps, features]", input_shape));
        };
        Ok(if self.args.return_sequences {
            vec![t, self.args.units]
        } else {
            vec![self.args.units]
        })
    }

    fn variables(&self) -> Vec<Variable> {
        self.kernel
            .iter()
            .chain(&self.recurrent_kernel)
            .chain(&self.bias)
            .cloned()
            .collect()
    }

    fn config(&self) -> LayerConfig {
        self.base.config(self.class_name(), &self.args)
    }

    fn regularization_loss<'t>(&self, tape: Option<&'t Tape>) -> Result<Option<Var<'t>>> {
        let a = &self.args;
        if a.kernel_regularizer.is_none()
            && a.recurrent_regularizer.is_none()
            && a.bias_regularizer.is_none()
        {
            return Ok(None);
        }
        self.base.built()?;
        sum_penalties(
            tape,
            &[
                (a.kernel_regularizer, self.kernel.as_ref()),
                (a.recurrent_regularizer, self.recurrent_kernel.as_ref()),
                (a.bias_regularizer, self.bias.as_ref()),
            ],
        )
    }
}

/// The elementwise activations the fused cell supports, with derivatives from their outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cell {
    Sigmoid,
    Tanh,
    Relu,
    Linear,
}

impl Cell {
    fn of(a: Activation) -> Option<Cell> {
        match a {
            Activation::Sigmoid => Some(Cell::Sigmoid),
            Activation::Tanh => Some(Cell::Tanh),
            Activation::Relu => Some(Cell::Relu),
            Activation::Linear => Some(Cell::Linear),
            _ => None,
        }
    }

    /// Applies the activation in place (one loop per case, so that each vectorizes).
    #[inline(always)]
    fn apply(self, xs: &mut [f32]) {
        match self {
            Cell::Sigmoid => xs.iter_mut().for_each(|x| *x = fastmath::sigmoid(*x)),
            Cell::Tanh => xs.iter_mut().for_each(|x| *x = fastmath::tanh(*x)),
            Cell::Relu => xs.iter_mut().for_each(|x| *x = x.max(0.0)),
            Cell::Linear => {}
        }
    }
}

/// An elementwise activation known at compile time, so that the fused loops specialize and
/// vectorize: its derivative at the point whose output is `y`.
trait Act {
    fn df(y: f32) -> f32;
}

struct SigmoidAct;
struct TanhAct;
struct ReluAct;
struct LinearAct;

impl Act for SigmoidAct {
    #[inline(always)]
    fn df(y: f32) -> f32 {
        y * (1.0 - y)
    }
}

impl Act for TanhAct {
    #[inline(always)]
    fn df(y: f32) -> f32 {
        1.0 - y * y
    }
}

impl Act for ReluAct {
    #[inline(always)]
    fn df(y: f32) -> f32 {
        if y > 0.0 { 1.0 } else { 0.0 }
    }
}

impl Act for LinearAct {
    #[inline(always)]
    fn df(_: f32) -> f32 {
        1.0
    }
}

/// Calls `$f::<S, A>(args)` with the types of the runtime pair `(s, a)` of [`Cell`]s.
macro_rules! dispatch {
    (($s:expr, $a:expr), $f:ident($($arg:expr),*)) => {{
        macro_rules! with_a {
            ($S:ty) => {
                match $a {
                    Cell::Sigmoid => $f::<$S, SigmoidAct>($($arg),*),
                    Cell::Tanh => $f::<$S, TanhAct>($($arg),*),
                    Cell::Relu => $f::<$S, ReluAct>($($arg),*),
                    Cell::Linear => $f::<$S, LinearAct>($($arg),*),
                }
            };
        }
        match $s {
            Cell::Sigmoid => with_a!(SigmoidAct),
            Cell::Tanh => with_a!(TanhAct),
            Cell::Relu => with_a!(ReluAct),
            Cell::Linear => with_a!(LinearAct),
        }
    }};
}

/// Batch, steps and units of one LSTM call.
#[derive(Clone, Copy)]
struct Shape {
    bsz: usize,
    steps: usize,
    u: usize,
}

/// Backward through time: the gradients `dz_t` of the pre-activations of every step,
/// time-major `[T, B, 4U]`, from the saved gate activations, cell states and `a(c_t)`, and the
/// upstream gradient `dy` (`[B, T, U]` with `return_sequences`, else `[B, U]` for the last step).
/// `S` is the gate activation, `A` the cell activation.
///
/// On x86-64 CPUs with AVX2 the same code runs compiled for AVX2 (8 lanes instead of SSE's 4):
/// the loops are elementwise, so the results are bit-identical either way.
fn backward_through_time<S: Act, A: Act>(
    shape: Shape,
    gates: &[f32],
    c: &[f32],
    ac: &[f32],
    rs: &[f32],
    dy: &[f32],
    return_sequences: bool,
) -> Vec<f32> {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2, checked just above.
        return unsafe { bptt_avx2::<S, A>(shape, gates, c, ac, rs, dy, return_sequences) };
    }
    bptt::<S, A>(shape, gates, c, ac, rs, dy, return_sequences)
}

/// [`bptt`] compiled for AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn bptt_avx2<S: Act, A: Act>(
    shape: Shape,
    gates: &[f32],
    c: &[f32],
    ac: &[f32],
    rs: &[f32],
    dy: &[f32],
    return_sequences: bool,
) -> Vec<f32> {
    bptt::<S, A>(shape, gates, c, ac, rs, dy, return_sequences)
}

/// The body of [`backward_through_time`].
#[inline(always)]
fn bptt<S: Act, A: Act>(
    Shape { bsz, steps, u }: Shape,
    gates: &[f32],
    c: &[f32],
    ac: &[f32],
    rs: &[f32],
    dy: &[f32],
    return_sequences: bool,
) -> Vec<f32> {
    let (g4, step) = (4 * u, bsz * u);
    let zeros = vec![0.0f32; u];
    let mut dz = vec![0.0f32; steps * bsz * g4];
    let mut dh_next = vec![0.0f32; step];
    let mut dc_next = vec![0.0f32; step];
    for t in (0..steps).rev() {
        let gt = &gates[t * bsz * g4..(t + 1) * bsz * g4];
        let dzt = &mut dz[t * bsz * g4..(t + 1) * bsz * g4];
        for n in 0..bsz {
            let (i, rest) = gt[n * g4..(n + 1) * g4].split_at(u);
            let (f, rest) = rest.split_at(u);
            let (g, o) = rest.split_at(u);
            let (dzi, rest) = dzt[n * g4..(n + 1) * g4].split_at_mut(u);
            let (dzf, rest) = rest.split_at_mut(u);
            let (dzg, dzo) = rest.split_at_mut(u);
            let row = t * step + n * u;
            let acn = &ac[row..row + u];
            let cp = if t > 0 {
                &c[row - step..row - step + u]
            } else {
                &zeros[..]
            };
            let dyn_ = if return_sequences {
                &dy[(n * steps + t) * u..(n * steps + t + 1) * u]
            } else if t + 1 == steps {
                &dy[n * u..(n + 1) * u]
            } else {
                &zeros[..]
            };
            let dhn = &dh_next[n * u..(n + 1) * u];
            let dcn = &mut dc_next[n * u..(n + 1) * u];
            for k in 0..u {
                let dh = dhn[k] + dyn_[k];
                let dc = dcn[k] + dh * o[k] * A::df(acn[k]);
                dcn[k] = dc * f[k];
                dzi[k] = dc * g[k] * S::df(i[k]);
                dzf[k] = dc * cp[k] * S::df(f[k]);
                dzg[k] = dc * i[k] * A::df(g[k]);
                dzo[k] = dh * acn[k] * S::df(o[k]);
            }
        }
        if t > 0 {
            gemm(
                bsz,
                g4,
                u,
                Mat::rows(dzt, g4),
                Mat::rows(rs, g4).t(),
                0.0,
                &mut dh_next,
            );
        }
    }
    dz
}

/// The recurrence of the forward pass over `gates` (time-major `[T, B, 4U]`, holding `x_t W + b`
/// on entry and the gate activations `i, f, g, o` on return): per step one product `h_{t-1} U`
/// and one fused pass over the four gates. Returns the cell states `c_t`, `a(c_t)` and the hidden
/// states `h_t`, each `[T, B, U]`.
///
/// On x86-64 CPUs with AVX2 the same code runs compiled for AVX2 (8 lanes instead of SSE's 4):
/// the gate pass is elementwise, so the results are bit-identical either way.
fn forward_steps(
    cells: (Cell, Cell),
    shape: Shape,
    rs: &[f32],
    gates: &mut [f32],
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2, checked just above.
        return unsafe { forward_steps_avx2(cells, shape, rs, gates) };
    }
    forward_steps_body(cells, shape, rs, gates)
}

/// [`forward_steps_body`] compiled for AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn forward_steps_avx2(
    cells: (Cell, Cell),
    shape: Shape,
    rs: &[f32],
    gates: &mut [f32],
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    forward_steps_body(cells, shape, rs, gates)
}

/// The body of [`forward_steps`].
#[inline(always)]
fn forward_steps_body(
    (s, a): (Cell, Cell),
    Shape { bsz, steps, u }: Shape,
    rs: &[f32],
    gates: &mut [f32],
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let (g4, rows, step) = (4 * u, steps * bsz, bsz * u);
    let mut c = vec![0.0f32; rows * u];
    let mut ac = vec![0.0f32; rows * u];
    let mut h = vec![0.0f32; rows * u];
    for t in 0..steps {
        let (h_prev, h_rest) = h.split_at_mut(t * step);
        let gt = &mut gates[t * bsz * g4..(t + 1) * bsz * g4];
        if t > 0 {
            let hp = &h_prev[(t - 1) * step..];
            gemm(bsz, u, g4, Mat::rows(hp, u), Mat::rows(rs, g4), 1.0, gt);
        }
        let (c_prev, c_rest) = c.split_at_mut(t * step);
        let c_prev = (t > 0).then(|| &c_prev[(t - 1) * step..]);
        let ct = &mut c_rest[..step];
        let act = &mut ac[t * step..(t + 1) * step];
        let ht = &mut h_rest[..step];
        for n in 0..bsz {
            let z = &mut gt[n * g4..(n + 1) * g4];
            s.apply(&mut z[..2 * u]);
            a.apply(&mut z[2 * u..3 * u]);
            s.apply(&mut z[3 * u..]);
            let (i, rest) = z.split_at(u);
            let (f, rest) = rest.split_at(u);
            let (g, o) = rest.split_at(u);
            let cn = &mut ct[n * u..(n + 1) * u];
            match c_prev {
                Some(cp) => {
                    let cp = &cp[n * u..(n + 1) * u];
                    for k in 0..u {
                        cn[k] = f[k] * cp[k] + i[k] * g[k];
                    }
                }
                None => {
                    for k in 0..u {
                        cn[k] = i[k] * g[k];
                    }
                }
            }
            let acn = &mut act[n * u..(n + 1) * u];
            acn.copy_from_slice(cn);
            a.apply(acn);
            let hn = &mut ht[n * u..(n + 1) * u];
            for k in 0..u {
                hn[k] = o[k] * acn[k];
            }
        }
    }
    (c, ac, h)
}

/// `[a, b, c] -> [b, a, c]` for a row-major buffer (batch-major <-> time-major).
fn swap_leading(src: &[f32], a: usize, b: usize, c: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; a * b * c];
    for i in 0..a {
        for j in 0..b {
            let s = (i * b + j) * c;
            let d = (j * a + i) * c;
            out[d..d + c].copy_from_slice(&src[s..s + c]);
        }
    }
    out
}

/// What the forward pass keeps for the backward pass (time-major buffers).
struct Saved {
    /// The input, time-major `[T, B, D]`.
    xt: Vec<f32>,
    /// The gate activations `i, f, g, o`, `[T, B, 4U]`.
    gates: Vec<f32>,
    /// The cell states `c_t`, `[T, B, U]`.
    c: Vec<f32>,
    /// `a(c_t)`, `[T, B, U]`.
    ac: Vec<f32>,
    /// The hidden states `h_t`, `[T, B, U]`.
    h: Vec<f32>,
}

/// The LSTM over a whole sequence as one recorded operation.
fn lstm_op<'t>(
    x: &Var<'t>,
    w: &Var<'t>,
    r: &Var<'t>,
    b: Option<&Var<'t>>,
    (s, a): (Cell, Cell),
    return_sequences: bool,
) -> Result<Var<'t>> {
    let (bsz, steps, d) = (x.shape()[0], x.shape()[1], x.shape()[2]);
    let u = r.shape()[0];
    let (wv, rv) = (w.value().to_contiguous(), r.value().to_contiguous());
    let (ws, rs) = (
        wv.as_slice().expect("contiguous"),
        rv.as_slice().expect("contiguous"),
    );
    let xc = x.value().to_contiguous();
    let xt = swap_leading(xc.as_slice().expect("contiguous"), bsz, steps, d);
    let (g4, rows) = (4 * u, steps * bsz);

    // Input projection of every step at once, plus the bias.
    let mut gates = vec![0.0f32; rows * g4];
    gemm(
        rows,
        d,
        g4,
        Mat::rows(&xt, d),
        Mat::rows(ws, g4),
        0.0,
        &mut gates,
    );
    if let Some(b) = b {
        let bv = b.value().to_contiguous();
        let bs = bv.as_slice().expect("contiguous");
        for row in gates.chunks_exact_mut(g4) {
            row.iter_mut().zip(bs).for_each(|(z, b)| *z += b);
        }
    }
    let (shape, step) = (Shape { bsz, steps, u }, bsz * u);
    let (c, ac, h) = forward_steps((s, a), shape, rs, &mut gates);

    let out = if return_sequences {
        Tensor::from_vec(swap_leading(&h, steps, bsz, u), &[bsz, steps, u])?
    } else {
        let last = if steps == 0 {
            vec![0.0; step]
        } else {
            h[(steps - 1) * step..].to_vec()
        };
        Tensor::from_vec(last, &[bsz, u])?
    };
    let saved = Saved {
        xt,
        gates,
        c,
        ac,
        h,
    };
    let inputs: Vec<&Var<'t>> = [x, w, r].into_iter().chain(b).collect();
    Ok(Var::custom("lstm", &inputs, out, move |dy, needs| {
        let dy = dy.to_contiguous();
        let dys = dy.as_slice().expect("contiguous");
        let Saved {
            xt,
            gates,
            c,
            ac,
            h,
        } = &saved;
        let (ws, rs) = (
            wv.as_slice().expect("contiguous"),
            rv.as_slice().expect("contiguous"),
        );
        let dz = dispatch!(
            (s, a),
            backward_through_time(shape, gates, c, ac, rs, dys, return_sequences)
        );
        let mut grads: Vec<Option<Tensor>> = Vec::with_capacity(needs.len());
        grads.push(if needs[0] {
            let mut dxt = vec![0.0f32; rows * d];
            gemm(
                rows,
                g4,
                d,
                Mat::rows(&dz, g4),
                Mat::rows(ws, g4).t(),
                0.0,
                &mut dxt,
            );
            Some(Tensor::from_vec(
                swap_leading(&dxt, steps, bsz, d),
                &[bsz, steps, d],
            )?)
        } else {
            None
        });
        grads.push(if needs[1] {
            let mut dw = vec![0.0f32; d * g4];
            gemm(
                d,
                rows,
                g4,
                Mat::rows(xt, d).t(),
                Mat::rows(&dz, g4),
                0.0,
                &mut dw,
            );
            Some(Tensor::from_vec(dw, &[d, g4])?)
        } else {
            None
        });
        grads.push(if needs[2] {
            // dU = sum_t h_{t-1}^T dz_t: h of steps 0..T-1 against dz of steps 1..T.
            let mut dr = vec![0.0f32; u * g4];
            let m = rows.saturating_sub(bsz);
            gemm(
                u,
                m,
                g4,
                Mat::rows(&h[..m * u], u).t(),
                Mat::rows(&dz[bsz * g4..], g4),
                0.0,
                &mut dr,
            );
            Some(Tensor::from_vec(dr, &[u, g4])?)
        } else {
            None
        });
        if needs.len() > 3 {
            grads.push(if needs[3] {
                Some(Tensor::from_vec(column_sums(&dz, g4), &[g4])?)
            } else {
                None
            });
        }
        Ok(grads)
    })?)
}
