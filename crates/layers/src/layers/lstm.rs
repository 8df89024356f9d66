//! `LSTM`: a long short-term memory layer, as one fused operation over the whole sequence.

use gradus_autograd::{Tape, Var, Variable};
use gradus_tensor::{Rng, Tensor};
use serde::{Deserialize, Serialize};

use super::dense::{yes, zeros};
use crate::activation::Activation;
use crate::base::{Base, positive, sum_penalties};
use crate::error::{Result, invalid};
use crate::initializers::Initializer;
use crate::layer::{Layer, LayerConfig};
use crate::regularizers::Regularizer;

mod act;
mod kernel;

#[cfg(target_arch = "x86_64")]
use self::kernel::Fma;
use self::kernel::{Init, Kernel, Lhs, MR, NR, Out, Panels, Portable, Rhs};

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
/// The whole sequence is one recorded operation. `W` and `U` are packed once per call; each
/// step computes `x_t W + b + h_{t-1} U` for a few batch rows at a time with a register-blocked
/// kernel and runs the fused pass over the four gates while those rows are in cache. The
/// backward pass through time is written by hand the same way: per step and block of rows the
/// product `dz_{t+1} U^T` and the fused gate pass, then, while `dz_t` is in cache, its
/// contributions to `dW`, `dU`, the bias and `dx`. On x86-64 CPUs with AVX2 and FMA the
/// products use fused multiply-adds (chosen at run time); results are deterministic.
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
    fn splits_over_batch(&self, _training: bool) -> bool {
        true
    }

    fn gains_from_shards(&self) -> bool {
        true
    }

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

    /// Applies the activation in place with `k`'s multiply-add (one loop per case, so that each
    /// vectorizes).
    #[inline(always)]
    fn apply<K: Kernel>(self, k: K, xs: &mut [f32]) {
        match self {
            Cell::Sigmoid => xs.iter_mut().for_each(|x| *x = act::sigmoid(k, *x)),
            Cell::Tanh => xs.iter_mut().for_each(|x| *x = act::tanh(k, *x)),
            Cell::Relu => xs.iter_mut().for_each(|x| *x = x.max(0.0)),
            Cell::Linear => {}
        }
    }
}

/// An elementwise activation known at compile time, so that the fused loops specialize and
/// vectorize: its value (with the kernel's multiply-add, also on 8 lanes at once) and its
/// derivative at the point whose output is `y`.
trait Act {
    fn f<K: Kernel>(k: K, x: f32) -> f32;
    fn df(y: f32) -> f32;

    /// [`Act::f`] of 8 lanes.
    #[inline(always)]
    fn f8<K: Kernel>(k: K, x: [f32; LANES]) -> [f32; LANES] {
        x.map(|v| Self::f(k, v))
    }
}

/// `F` applied to `N` lanes: the 8-lane form for whole vectors.
#[inline(always)]
fn apply<const N: usize, K: Kernel, F: Act>(k: K, x: [f32; N]) -> [f32; N] {
    if N == LANES {
        load(&F::f8(k, load(&x)))
    } else {
        x.map(|v| F::f(k, v))
    }
}

struct SigmoidAct;
struct TanhAct;
struct ReluAct;
struct LinearAct;

impl Act for SigmoidAct {
    #[inline(always)]
    fn f<K: Kernel>(k: K, x: f32) -> f32 {
        act::sigmoid(k, x)
    }

    #[inline(always)]
    fn f8<K: Kernel>(k: K, x: [f32; LANES]) -> [f32; LANES] {
        k.sigmoid8(x)
    }

    #[inline(always)]
    fn df(y: f32) -> f32 {
        y * (1.0 - y)
    }
}

impl Act for TanhAct {
    #[inline(always)]
    fn f<K: Kernel>(k: K, x: f32) -> f32 {
        act::tanh(k, x)
    }

    #[inline(always)]
    fn f8<K: Kernel>(k: K, x: [f32; LANES]) -> [f32; LANES] {
        k.tanh8(x)
    }

    #[inline(always)]
    fn df(y: f32) -> f32 {
        1.0 - y * y
    }
}

impl Act for ReluAct {
    #[inline(always)]
    fn f<K: Kernel>(_: K, x: f32) -> f32 {
        x.max(0.0)
    }

    #[inline(always)]
    fn df(y: f32) -> f32 {
        if y > 0.0 { 1.0 } else { 0.0 }
    }
}

impl Act for LinearAct {
    #[inline(always)]
    fn f<K: Kernel>(_: K, x: f32) -> f32 {
        x
    }

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

/// Batch, steps, features and units of one LSTM call.
#[derive(Debug, Clone, Copy)]
struct Dims {
    bsz: usize,
    steps: usize,
    d: usize,
    u: usize,
}

/// Splits `m` rows into tiles of at most [`MR`] as `(first row, rows)`: whole tiles, except
/// that a remainder of one or two rows shares the last two tiles (`4 + 3` or `4 + 4`), since a
/// tile of one or two rows has too few accumulators to keep the multiply-adds busy.
fn row_tiles(m: usize) -> impl Iterator<Item = (usize, usize)> {
    let (mut whole, rem) = (m / MR, m % MR);
    let tail = if whole > 0 && (1..3).contains(&rem) {
        whole -= 1;
        [4, MR + rem - 4]
    } else {
        [rem, 0]
    };
    (0..whole)
        .map(|_| MR)
        .chain(tail)
        .filter(|&n| n > 0)
        .scan(0, |r0, n| {
            let first = *r0;
            *r0 += n;
            Some((first, n))
        })
}

/// What the forward pass keeps for the backward pass (time-major buffers).
#[derive(Debug)]
struct Saved {
    /// The gate activations `i, f, g, o`, `[T, B, 4U]`.
    gates: Vec<f32>,
    /// The cell states `c_t`, `[T, B, U]` (the backward pass recomputes `a(c_t)`).
    c: Vec<f32>,
    /// The hidden states `h_t`, `[T, B, U]`.
    h: Vec<f32>,
}

/// The operands of the forward pass.
#[derive(Debug, Clone, Copy)]
struct Forward<'a> {
    cells: (Cell, Cell),
    dims: Dims,
    /// The input, batch-major `[B, T, D]`.
    x: &'a [f32],
    /// The kernel `W: [D, 4U]`, packed.
    w: &'a Panels,
    /// The recurrent kernel `U: [U, 4U]`, packed.
    r: &'a Panels,
    bias: Option<&'a [f32]>,
}

/// The forward pass over the whole sequence. Per step and per block of [`MR`] batch rows: the
/// tiles of `z = x_t W + b + h_{t-1} U` (summed in this order), then the fused pass over the
/// four gates while the block's `z` is in cache, which appends the rows of `c_t`, `h_t` and the
/// gate activations.
///
/// On x86-64 CPUs with AVX2 and FMA the products use fused multiply-adds and the gate pass runs
/// compiled for AVX2; elsewhere the portable kernel. Either is deterministic.
fn forward(op: Forward<'_>) -> Saved {
    #[cfg(target_arch = "x86_64")]
    if let Some(kern) = Fma::detect() {
        // SAFETY: the CPU has AVX2 and FMA (`Fma::detect`).
        return unsafe { forward_fma(kern, op) };
    }
    forward_body(Portable, op)
}

/// [`forward_body`] compiled for AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn forward_fma(kern: Fma, op: Forward<'_>) -> Saved {
    forward_body(kern, op)
}

/// The body of [`forward`].
#[inline(always)]
fn forward_body<K: Kernel>(kern: K, op: Forward<'_>) -> Saved {
    let Forward {
        cells: (s, a),
        dims: Dims { bsz, steps, d, u },
        x,
        w,
        r,
        bias,
    } = op;
    let (g4, rows) = (4 * u, steps * bsz);
    let mut gates = Vec::with_capacity(rows * g4);
    let mut c = Vec::with_capacity(rows * u);
    let mut h: Vec<f32> = Vec::with_capacity(rows * u);
    let mut cn = vec![0.0f32; u];
    for t in 0..steps {
        for (r0, nr) in row_tiles(bsz) {
            let base = gates.len();
            gates.resize(base + nr * g4, 0.0);
            let zb = &mut gates[base..];
            let xs = Lhs {
                data: &x[(r0 * steps + t) * d..],
                rs: steps * d,
                cs: 1,
            };
            for jp in 0..w.count() {
                let (j0, width) = (jp * NR, w.width(jp));
                let xw = (d, xs, Rhs::panel(w, jp));
                let init = bias.map_or(Init::Zero, |b| Init::Row(&b[j0..]));
                let out = Out {
                    data: &mut zb[j0..],
                    rs: g4,
                    width,
                };
                if t > 0 {
                    let hs = Lhs {
                        data: &h[((t - 1) * bsz + r0) * u..],
                        rs: u,
                        cs: 1,
                    };
                    kern.tile(nr, &[xw, (u, hs, Rhs::panel(r, jp))], init, out);
                } else {
                    kern.tile(nr, &[xw], init, out);
                }
            }
            for (row, zr) in zb.chunks_exact_mut(g4).enumerate() {
                let prev = (t > 0).then(|| ((t - 1) * bsz + r0 + row) * u);
                cell(kern, (s, a), zr, prev.map(|p| &c[p..p + u]), &mut cn);
                c.extend_from_slice(&cn);
                a.apply(kern, &mut cn);
                h.extend(zr[3 * u..].iter().zip(&cn).map(|(o, ac)| o * ac));
            }
        }
    }
    Saved { gates, c, h }
}

/// One batch row of the forward cell: applies the activations to the pre-activations `z =
/// [z_i, z_f, z_c, z_o]` in place (giving `i, f, g, o`), sets `cn = f c_prev + i g` (`i g`
/// without `c_prev`).
#[inline(always)]
fn cell<K: Kernel>(
    k: K,
    (s, a): (Cell, Cell),
    z: &mut [f32],
    c_prev: Option<&[f32]>,
    cn: &mut [f32],
) {
    let u = cn.len();
    let z = &mut z[..4 * u];
    s.apply(k, &mut z[..2 * u]);
    a.apply(k, &mut z[2 * u..3 * u]);
    s.apply(k, &mut z[3 * u..]);
    let (i, rest) = z.split_at(u);
    let (f, rest) = rest.split_at(u);
    let g = &rest[..u];
    match c_prev {
        Some(cp) => {
            for ((((c, &f), &cp), &i), &g) in cn.iter_mut().zip(f).zip(cp).zip(i).zip(g) {
                *c = f * cp + i * g;
            }
        }
        None => {
            for ((c, &i), &g) in cn.iter_mut().zip(i).zip(g) {
                *c = i * g;
            }
        }
    }
}

/// Lanes processed together by the backward cell: its loops are written on fixed-size arrays,
/// which the compiler turns into vector instructions (8 lanes with AVX2).
const LANES: usize = 8;

/// The first `N` values of `s`.
#[inline(always)]
fn load<const N: usize>(s: &[f32]) -> [f32; N] {
    s[..N].try_into().expect("N values")
}

/// One batch row of the backward cell: from the gates `[i, f, g, o]`, `c_t`, `c_{t-1}`, the
/// gradient `dh` from step `t + 1` and the upstream `dy_t`, with `dc` holding the gradient of
/// `c_t` that flows back from step `t + 1`: [`GradRow::run`] writes `dz = [dz_i, dz_f, dz_c,
/// dz_o]` and leaves in `dc` the gradient of `c_{t-1}`.
struct GradRow<'a> {
    gates: &'a [f32],
    c: &'a [f32],
    cp: &'a [f32],
    dh: &'a [f32],
    dy: &'a [f32],
    dc: &'a mut [f32],
    dz: &'a mut [f32],
    /// `db`, to which the row's `dz` is added.
    db: &'a mut [f32],
}

impl GradRow<'_> {
    /// The whole row, `S` being the gate activation and `A` the cell activation.
    #[inline(always)]
    fn run<K: Kernel, S: Act, A: Act>(mut self, k: K) {
        let u = self.dc.len();
        let whole = u - u % LANES;
        for j in (0..whole).step_by(LANES) {
            self.lanes::<LANES, K, S, A>(k, j);
        }
        for j in whole..u {
            self.lanes::<1, K, S, A>(k, j);
        }
    }

    /// The units `j..j + N`: loads every operand, computes all lanes, then stores.
    #[inline(always)]
    fn lanes<const N: usize, K: Kernel, S: Act, A: Act>(&mut self, k: K, j: usize) {
        let u = self.dc.len();
        let gates = self.gates;
        let [i, f, g, o]: [[f32; N]; 4] = [
            load(&gates[j..]),
            load(&gates[u + j..]),
            load(&gates[2 * u + j..]),
            load(&gates[3 * u + j..]),
        ];
        let ac = apply::<N, K, A>(k, load(&self.c[j..]));
        let cp: [f32; N] = load(&self.cp[j..]);
        let (dh, dy): ([f32; N], [f32; N]) = (load(&self.dh[j..]), load(&self.dy[j..]));
        let mut dc: [f32; N] = load(&self.dc[j..]);
        let mut dz = [[0.0f32; N]; 4];
        for l in 0..N {
            let dh = dh[l] + dy[l];
            let dck = dc[l] + dh * o[l] * A::df(ac[l]);
            dc[l] = dck * f[l];
            dz[0][l] = dck * g[l] * S::df(i[l]);
            dz[1][l] = dck * cp[l] * S::df(f[l]);
            dz[2][l] = dck * i[l] * A::df(g[l]);
            dz[3][l] = dh * ac[l] * S::df(o[l]);
        }
        self.dc[j..j + N].copy_from_slice(&dc);
        for (q, dzq) in dz.iter().enumerate() {
            self.dz[q * u + j..q * u + j + N].copy_from_slice(dzq);
            let db: &mut [f32; N] = (&mut self.db[q * u + j..q * u + j + N])
                .try_into()
                .expect("N values");
            for (s, v) in db.iter_mut().zip(dzq) {
                *s += v;
            }
        }
    }
}

/// The operands of the backward pass.
#[derive(Debug, Clone, Copy)]
struct Backward<'a> {
    dims: Dims,
    /// The input, batch-major `[B, T, D]`.
    x: &'a [f32],
    saved: &'a Saved,
    /// The upstream gradient: `[B, T, U]` with `return_sequences`, else `[B, U]`.
    dy: &'a [f32],
    return_sequences: bool,
    /// `U^T: [4U, U]`, packed.
    rt: &'a Panels,
    /// `W^T: [4U, D]`, packed, when the input's gradient is needed.
    wt: Option<&'a Panels>,
}

/// The gradients of the LSTM's inputs.
#[derive(Debug)]
struct Grads {
    /// `dx`, batch-major `[B, T, D]`, when asked for.
    dx: Option<Vec<f32>>,
    /// `dW: [D, 4U]`.
    dw: Vec<f32>,
    /// `dU: [U, 4U]`.
    du: Vec<f32>,
    /// `db: [4U]`.
    db: Vec<f32>,
}

/// Backward through time, per step from the last: per block of [`MR`] batch rows the tiles of
/// `dh = dz_{t+1} U^T` (plus the upstream `dy_t`), then the fused pass that gives the
/// pre-activation gradients `dz_t` from the saved gates and cell states and adds each row to
/// `db` (rows in order, as a separate sum over the rows would); then, while `dz_t` is in cache,
/// `dW += x_t^T dz_t`, `dU += h_{t-1}^T dz_t` and `dx_t = dz_t W^T`. `S` is the gate
/// activation, `A` the cell activation.
///
/// Kernels as [`forward`].
fn backward<S: Act, A: Act>(op: Backward<'_>) -> Grads {
    #[cfg(target_arch = "x86_64")]
    if let Some(kern) = Fma::detect() {
        // SAFETY: the CPU has AVX2 and FMA (`Fma::detect`).
        return unsafe { backward_fma::<S, A>(kern, op) };
    }
    backward_body::<Portable, S, A>(Portable, op)
}

/// [`backward_body`] compiled for AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn backward_fma<S: Act, A: Act>(kern: Fma, op: Backward<'_>) -> Grads {
    backward_body::<Fma, S, A>(kern, op)
}

/// `c[i, j] += sum_{p < k} A[i, p] B[p, j]` for a row-major `c: [m, n]`, where `B[p, j] =
/// b[p * ldb + j]` and each row of `b` has room for whole panels of [`NR`] columns.
#[inline(always)]
fn accumulate<K: Kernel>(
    kern: K,
    (m, k, n): (usize, usize, usize),
    a: Lhs<'_>,
    (b, ldb): (&[f32], usize),
    c: &mut [f32],
) {
    for j0 in (0..n).step_by(NR) {
        let rhs = Rhs {
            data: &b[j0..],
            rs: ldb,
        };
        for (i0, nr) in row_tiles(m) {
            let lhs = Lhs {
                data: &a.data[i0 * a.rs..],
                ..a
            };
            let out = Out {
                data: &mut c[i0 * n + j0..],
                rs: n,
                width: NR.min(n - j0),
            };
            kern.tile(nr, &[(k, lhs, rhs)], Init::Out, out);
        }
    }
}

/// The row stride of `dz` for `4U` gates: whole panels of [`NR`] columns, and an odd number of
/// them. The products read `dz` down the rows of a panel (`x_t^T dz`, `h_{t-1}^T dz`) or a few
/// rows at once (`dz U^T`); with a stride of a power of two (1 KiB for 64 units) all those rows
/// fall into a few sets of the L1 cache and evict each other, while with an odd number of
/// 64-byte lines (a panel of 16 floats is one line) they spread over every set (the dW/dU
/// accumulation of 64 units alone: 9% less time).
fn dz_stride(g4: usize) -> usize {
    (g4.div_ceil(NR) | 1) * NR
}

/// The body of [`backward`].
#[inline(always)]
fn backward_body<K: Kernel, S: Act, A: Act>(kern: K, op: Backward<'_>) -> Grads {
    let Backward {
        dims: Dims { bsz, steps, d, u },
        x,
        saved: Saved { gates, c, h },
        dy,
        return_sequences,
        rt,
        wt,
    } = op;
    // `dz_t` and `dz_{t+1}`, with rows padded (the padding stays zero).
    let (g4, ldz) = (4 * u, dz_stride(4 * u));
    let mut dz = vec![0.0f32; bsz * ldz];
    let mut dz_next = vec![0.0f32; bsz * ldz];
    let mut dc = vec![0.0f32; bsz * u];
    let mut dh = vec![0.0f32; MR * u];
    let mut x_rows = Vec::with_capacity(bsz * d);
    let zeros = vec![0.0f32; u];
    let mut dw = vec![0.0f32; d * g4];
    let mut du = vec![0.0f32; u * g4];
    let mut db = vec![0.0f32; g4];
    let mut dx = wt.map(|_| vec![0.0f32; bsz * steps * d]);
    if bsz == 0 {
        return Grads { dx, dw, du, db };
    }
    for t in (0..steps).rev() {
        std::mem::swap(&mut dz, &mut dz_next);
        for (r0, nr) in row_tiles(bsz) {
            if t + 1 < steps {
                let lhs = Lhs {
                    data: &dz_next[r0 * ldz..],
                    rs: ldz,
                    cs: 1,
                };
                for jp in 0..rt.count() {
                    let out = Out {
                        data: &mut dh[jp * NR..],
                        rs: u,
                        width: rt.width(jp),
                    };
                    kern.tile(nr, &[(g4, lhs, Rhs::panel(rt, jp))], Init::Zero, out);
                }
            } else {
                dh.fill(0.0);
            }
            for (row, dhn) in dh.chunks_exact(u).enumerate().take(nr) {
                let n = r0 + row;
                let at = t * bsz + n;
                let cp = if t > 0 {
                    &c[(at - bsz) * u..(at - bsz + 1) * u]
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
                GradRow {
                    gates: &gates[at * g4..(at + 1) * g4],
                    c: &c[at * u..(at + 1) * u],
                    cp,
                    dh: dhn,
                    dy: dyn_,
                    dc: &mut dc[n * u..(n + 1) * u],
                    dz: &mut dz[n * ldz..n * ldz + g4],
                    db: &mut db,
                }
                .run::<K, S, A>(kern);
            }
        }
        // dW += x_t^T dz_t, with x_t^T[i, n] = x_rows[n D + i]: the rows of x_t copied into
        // one block, which the kernel reads in order instead of rows `T D` values apart.
        x_rows.clear();
        for n in 0..bsz {
            x_rows.extend_from_slice(&x[(n * steps + t) * d..(n * steps + t + 1) * d]);
        }
        let xt = Lhs {
            data: &x_rows,
            rs: 1,
            cs: d,
        };
        accumulate(kern, (d, bsz, g4), xt, (&dz, ldz), &mut dw);
        if t > 0 {
            let hp = Lhs {
                data: &h[(t - 1) * bsz * u..],
                rs: 1,
                cs: u,
            };
            accumulate(kern, (u, bsz, g4), hp, (&dz, ldz), &mut du);
        }
        if let (Some(dx), Some(wt)) = (dx.as_mut(), wt) {
            for (r0, nr) in row_tiles(bsz) {
                let lhs = Lhs {
                    data: &dz[r0 * ldz..],
                    rs: ldz,
                    cs: 1,
                };
                for jp in 0..wt.count() {
                    let out = Out {
                        data: &mut dx[(r0 * steps + t) * d + jp * NR..],
                        rs: steps * d,
                        width: wt.width(jp),
                    };
                    kern.tile(nr, &[(g4, lhs, Rhs::panel(wt, jp))], Init::Zero, out);
                }
            }
        }
    }
    Grads { dx, dw, du, db }
}

/// `[a, b, c] -> [b, a, c]` for a row-major buffer (time-major to batch-major).
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
    let g4 = 4 * u;
    let (wv, rv) = (w.value().to_contiguous(), r.value().to_contiguous());
    let (ws, rs) = (
        wv.as_slice().expect("contiguous"),
        rv.as_slice().expect("contiguous"),
    );
    let xc = x.value().to_contiguous();
    let bv = b.map(|b| b.value().to_contiguous());
    let dims = Dims { bsz, steps, d, u };
    let (wp, rp) = (
        Panels::pack(d, g4, ws, g4, 1),
        Panels::pack(u, g4, rs, g4, 1),
    );
    let saved = forward(Forward {
        cells: (s, a),
        dims,
        x: xc.as_slice().expect("contiguous"),
        w: &wp,
        r: &rp,
        bias: bv.as_ref().map(|b| b.as_slice().expect("contiguous")),
    });
    let step = bsz * u;
    let out = if return_sequences {
        Tensor::from_vec(swap_leading(&saved.h, steps, bsz, u), &[bsz, steps, u])?
    } else {
        Tensor::from_vec(saved.h[(steps - 1) * step..].to_vec(), &[bsz, u])?
    };
    let inputs: Vec<&Var<'t>> = [x, w, r].into_iter().chain(b).collect();
    Ok(Var::custom("lstm", &inputs, out, move |dy, needs| {
        let dy = dy.to_contiguous();
        let ws = wv.as_slice().expect("contiguous");
        let rs = rv.as_slice().expect("contiguous");
        let rt = Panels::pack(g4, u, rs, 1, g4);
        let wt = needs[0].then(|| Panels::pack(g4, d, ws, 1, g4));
        let op = Backward {
            dims,
            x: xc.as_slice().expect("contiguous"),
            saved: &saved,
            dy: dy.as_slice().expect("contiguous"),
            return_sequences,
            rt: &rt,
            wt: wt.as_ref(),
        };
        let Grads { dx, dw, du, db } = dispatch!((s, a), backward(op));
        let mut grads = vec![
            dx.map(|dx| Tensor::from_vec(dx, &[bsz, steps, d]))
                .transpose()?,
            needs[1]
                .then(|| Tensor::from_vec(dw, &[d, g4]))
                .transpose()?,
            needs[2]
                .then(|| Tensor::from_vec(du, &[u, g4]))
                .transpose()?,
        ];
        if needs.len() > 3 {
            grads.push(needs[3].then(|| Tensor::from_vec(db, &[g4])).transpose()?);
        }
        Ok(grads)
    })?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reference LSTM in `f64`, written from the formulas: forward over the sequence and
    /// backward through time, for the cells `(s, a)`.
    struct Reference {
        dims: Dims,
        cells: (Cell, Cell),
        x: Vec<f64>,
        w: Vec<f64>,
        r: Vec<f64>,
        b: Vec<f64>,
    }

    fn act(cell: Cell, v: f64) -> f64 {
        match cell {
            Cell::Sigmoid => 1.0 / (1.0 + (-v).exp()),
            Cell::Tanh => v.tanh(),
            Cell::Relu => v.max(0.0),
            Cell::Linear => v,
        }
    }

    /// The derivative at the point whose output is `y`.
    fn dact(cell: Cell, y: f64) -> f64 {
        match cell {
            Cell::Sigmoid => y * (1.0 - y),
            Cell::Tanh => 1.0 - y * y,
            Cell::Relu => f64::from(u8::from(y > 0.0)),
            Cell::Linear => 1.0,
        }
    }

    /// `(h of every step [T][B][U], dx [B, T, D], dW, dU, db)` for the upstream gradient `dy` of
    /// every step's `h` (`[B, T, U]`).
    #[allow(clippy::type_complexity)]
    fn reference(m: &Reference, dy: &[f64]) -> (Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>) {
        let Dims { bsz, steps, d, u } = m.dims;
        let (s, a) = m.cells;
        let g4 = 4 * u;
        let (mut hs, mut cs, mut gs) = (vec![], vec![], vec![]);
        let (mut h, mut c) = (vec![0.0; bsz * u], vec![0.0; bsz * u]);
        for t in 0..steps {
            let mut gates = vec![0.0; bsz * g4];
            for n in 0..bsz {
                for j in 0..g4 {
                    let mut z = m.b[j];
                    z += (0..d)
                        .map(|p| m.x[(n * steps + t) * d + p] * m.w[p * g4 + j])
                        .sum::<f64>();
                    z += (0..u).map(|p| h[n * u + p] * m.r[p * g4 + j]).sum::<f64>();
                    let cell = if (2 * u..3 * u).contains(&j) { a } else { s };
                    gates[n * g4 + j] = act(cell, z);
                }
                for k in 0..u {
                    let gt = &gates[n * g4..];
                    c[n * u + k] = gt[u + k] * c[n * u + k] + gt[k] * gt[2 * u + k];
                    h[n * u + k] = gt[3 * u + k] * act(a, c[n * u + k]);
                }
            }
            hs.push(h.clone());
            cs.push(c.clone());
            gs.push(gates);
        }
        let (mut dx, mut dw, mut du, mut db) = (
            vec![0.0; bsz * steps * d],
            vec![0.0; d * g4],
            vec![0.0; u * g4],
            vec![0.0; g4],
        );
        let (mut dh_next, mut dc_next) = (vec![0.0; bsz * u], vec![0.0; bsz * u]);
        for t in (0..steps).rev() {
            let mut dz = vec![0.0; bsz * g4];
            for n in 0..bsz {
                let gt = &gs[t][n * g4..];
                for k in 0..u {
                    let dh = dh_next[n * u + k] + dy[(n * steps + t) * u + k];
                    let ac = act(a, cs[t][n * u + k]);
                    let cp = if t > 0 { cs[t - 1][n * u + k] } else { 0.0 };
                    let (i, f, g, o) = (gt[k], gt[u + k], gt[2 * u + k], gt[3 * u + k]);
                    let dc = dc_next[n * u + k] + dh * o * dact(a, ac);
                    dc_next[n * u + k] = dc * f;
                    dz[n * g4 + k] = dc * g * dact(s, i);
                    dz[n * g4 + u + k] = dc * cp * dact(s, f);
                    dz[n * g4 + 2 * u + k] = dc * i * dact(a, g);
                    dz[n * g4 + 3 * u + k] = dh * ac * dact(s, o);
                }
            }
            for n in 0..bsz {
                for j in 0..g4 {
                    let v = dz[n * g4 + j];
                    db[j] += v;
                    for p in 0..d {
                        dw[p * g4 + j] += m.x[(n * steps + t) * d + p] * v;
                        dx[(n * steps + t) * d + p] += v * m.w[p * g4 + j];
                    }
                    for p in 0..u {
                        if t > 0 {
                            du[p * g4 + j] += hs[t - 1][n * u + p] * v;
                        }
                    }
                }
                for p in 0..u {
                    dh_next[n * u + p] = (0..g4).map(|j| dz[n * g4 + j] * m.r[p * g4 + j]).sum();
                }
            }
        }
        (hs.concat(), dx, dw, du, db)
    }

    fn values(n: usize, seed: f64, scale: f64) -> Vec<f64> {
        (0..n)
            .map(|i| ((i as f64 + seed) * 0.618_034).sin() * scale)
            .collect()
    }

    fn f32s(v: &[f64]) -> Vec<f32> {
        v.iter().map(|&v| v as f32).collect()
    }

    fn assert_close(what: &str, got: &[f32], want: &[f64]) {
        assert_eq!(got.len(), want.len(), "{what}: lengths");
        for (k, (&g, &w)) in got.iter().zip(want).enumerate() {
            let err = (f64::from(g) - w).abs();
            assert!(err <= 1e-5 + 1e-5 * w.abs(), "{what}[{k}]: {g} vs {w}");
        }
    }

    /// Runs the forward and backward pass with `kern` and compares every output with the
    /// `f64` reference; returns the outputs for comparisons between kernels.
    fn run<K: Kernel>(kern: K, m: &Reference, return_sequences: bool) -> (Vec<f32>, Grads) {
        let Dims { bsz, steps, d, u } = m.dims;
        let g4 = 4 * u;
        let (x, w, r, b) = (f32s(&m.x), f32s(&m.w), f32s(&m.r), f32s(&m.b));
        let (wp, rp) = (
            Panels::pack(d, g4, &w, g4, 1),
            Panels::pack(u, g4, &r, g4, 1),
        );
        let saved = forward_body(
            kern,
            Forward {
                cells: m.cells,
                dims: m.dims,
                x: &x,
                w: &wp,
                r: &rp,
                bias: Some(&b),
            },
        );
        // With return_sequences every step gets an upstream gradient, else only the last.
        let dy_full = values(bsz * steps * u, 0.3, 1.0);
        let dy_ref: Vec<f64> = if return_sequences {
            dy_full.clone()
        } else {
            (0..bsz * steps * u)
                .map(|k| {
                    if (k / u) % steps == steps - 1 {
                        dy_full[k]
                    } else {
                        0.0
                    }
                })
                .collect()
        };
        let dy: Vec<f32> = if return_sequences {
            f32s(&dy_full)
        } else {
            (0..bsz)
                .flat_map(|n| f32s(&dy_full[((n + 1) * steps - 1) * u..(n + 1) * steps * u]))
                .collect()
        };
        let (rt, wt) = (
            Panels::pack(g4, u, &r, 1, g4),
            Panels::pack(g4, d, &w, 1, g4),
        );
        let op = Backward {
            dims: m.dims,
            x: &x,
            saved: &saved,
            dy: &dy,
            return_sequences,
            rt: &rt,
            wt: Some(&wt),
        };
        let (gate, cell) = m.cells;
        let grads = dispatch!((gate, cell), backward_body_with(kern, op));
        let (h, dx, dw, du, db) = reference(m, &dy_ref);
        assert_close("h", &saved.h, &h);
        assert_close("dx", grads.dx.as_deref().expect("asked for"), &dx);
        assert_close("dW", &grads.dw, &dw);
        assert_close("dU", &grads.du, &du);
        assert_close("db", &grads.db, &db);
        (saved.h, grads)
    }

    /// [`backward_body`] with the cell types first, for `dispatch!`.
    fn backward_body_with<S: Act, A: Act>(kern: impl Kernel, op: Backward<'_>) -> Grads {
        backward_body::<_, S, A>(kern, op)
    }

    fn model(dims: Dims, cells: (Cell, Cell)) -> Reference {
        let Dims { bsz, steps, d, u } = dims;
        Reference {
            dims,
            cells,
            x: values(bsz * steps * d, 0.1, 1.0),
            w: values(d * 4 * u, 1.7, 0.5),
            r: values(u * 4 * u, 2.9, 0.4),
            b: values(4 * u, 4.1, 0.3),
        }
    }

    /// Odd sizes: single rows, partial row blocks and partial panels (units and features that are
    /// not multiples of 16), against the `f64` reference, for both kernels; the fast kernel is
    /// deterministic.
    #[test]
    fn kernels_match_an_f64_reference_lstm() {
        let cases = [
            (1, 4, 3, 5, (Cell::Sigmoid, Cell::Tanh)),
            (0, 2, 3, 5, (Cell::Sigmoid, Cell::Tanh)),
            (3, 5, 2, 7, (Cell::Sigmoid, Cell::Tanh)),
            (7, 3, 17, 9, (Cell::Sigmoid, Cell::Tanh)),
            (13, 2, 4, 16, (Cell::Sigmoid, Cell::Tanh)),
            (4, 3, 5, 3, (Cell::Tanh, Cell::Relu)),
            (2, 3, 5, 6, (Cell::Sigmoid, Cell::Linear)),
            (3, 2, 4, 11, (Cell::Tanh, Cell::Relu)),
            (8, 2, 3, 8, (Cell::Sigmoid, Cell::Linear)),
        ];
        for (bsz, steps, d, u, cells) in cases {
            let m = model(Dims { bsz, steps, d, u }, cells);
            for seq in [false, true] {
                run(Portable, &m, seq);
                #[cfg(target_arch = "x86_64")]
                if let Some(kern) = Fma::detect() {
                    let (h1, g1) = run(kern, &m, seq);
                    let (h2, g2) = run(kern, &m, seq);
                    assert_eq!(h1, h2);
                    assert_eq!((g1.dx, g1.dw, g1.du, g1.db), (g2.dx, g2.dw, g2.du, g2.db));
                }
            }
        }
    }

    #[test]
    fn row_tiles_cover_the_rows_without_tiny_tiles() {
        for m in 0..40 {
            let tiles: Vec<(usize, usize)> = row_tiles(m).collect();
            let mut next = 0;
            for &(r0, n) in &tiles {
                assert_eq!(r0, next, "m = {m}: {tiles:?}");
                assert!((1..=MR).contains(&n), "m = {m}: {tiles:?}");
                assert!(n >= 3 || m == n, "m = {m}: {tiles:?}");
                next += n;
            }
            assert_eq!(next, m, "m = {m}: {tiles:?}");
        }
        assert_eq!(row_tiles(128).last(), Some((124, 4)));
    }
}
