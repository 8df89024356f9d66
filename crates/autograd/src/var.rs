//! [`Var`]: a value in a computation, tracked on a tape or not, and the custom-op extension point.

use gradus_tensor::Tensor;

use crate::error::{AutogradError, Result};
use crate::tape::{BackwardFn, NodeId, Tape};
use crate::variable::Variable;

/// A value in a differentiable computation: a [`Tensor`] plus, when it is tracked, its place on a
/// [`Tape`].
///
/// The same code path serves training and inference. Under a tape (values from
/// [`Tape::watch`], [`Tape::constant`] or computed from them), operations whose inputs include a
/// tracked value are recorded; with values made by [`Var::constant`] nothing is recorded and an
/// operation costs exactly its tensor operation (no node, no saved tensor). A layer lifts its
/// variables into the context of its input with [`param`](Var::param).
///
/// Operations are methods named as the tensor operations (`add`, `matmul`, `softmax`, ...) and
/// return `Result`: shape errors surface at the operation that caused them.
///
/// ```
/// use gradus_autograd::{Tape, Var, Variable};
/// use gradus_tensor::Tensor;
///
/// fn dense<'t>(x: &Var<'t>, w: &Variable, b: &Variable) -> gradus_autograd::Result<Var<'t>> {
///     Ok(x.matmul(&x.param(w))?.add(&x.param(b))?.relu())
/// }
///
/// let w = Variable::new("dense/kernel", Tensor::ones(&[2, 3]));
/// let b = Variable::new("dense/bias", Tensor::zeros(&[3]));
/// let x = Tensor::from_vec(vec![1.0, -2.0, 3.0, 4.0], &[2, 2])?;
///
/// // Inference: nothing recorded.
/// let y = dense(&Var::constant(x.clone()), &w, &b)?;
/// assert_eq!(y.value().to_vec(), vec![0.0, 0.0, 0.0, 7.0, 7.0, 7.0]);
///
/// // Training: the same code under a tape.
/// let tape = Tape::new();
/// let loss = dense(&tape.constant(x), &w, &b)?.sum_all();
/// let grads = tape.gradient(&loss, &[&w, &b])?;
/// assert_eq!(grads[0].to_vec(), vec![3.0, 3.0, 3.0, 4.0, 4.0, 4.0]);
/// assert_eq!(grads[1].to_vec(), vec![1.0, 1.0, 1.0]);
/// # Ok::<(), gradus_autograd::AutogradError>(())
/// ```
#[derive(Clone)]
pub struct Var<'t> {
    value: Tensor,
    tape: Option<&'t Tape>,
    node: Option<NodeId>,
}

impl std::fmt::Debug for Var<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Var")
            .field("shape", &self.value.shape())
            .field("on_tape", &self.tape.is_some())
            .field("node", &self.node)
            .finish()
    }
}

impl<'t> Var<'t> {
    pub(crate) fn from_parts(value: Tensor, tape: Option<&'t Tape>, node: Option<NodeId>) -> Self {
        Var { value, tape, node }
    }

    /// An untracked value: operations on it (with other untracked values) record nothing.
    pub fn constant(value: Tensor) -> Var<'t> {
        Var::from_parts(value, None, None)
    }

    /// `variable` lifted into `tape`'s context: watched on the tape when there is one and the
    /// variable is trainable, a constant otherwise (on the tape, if any).
    pub fn variable(tape: Option<&'t Tape>, variable: &Variable) -> Var<'t> {
        match tape {
            Some(t) => t.watch(variable),
            None => Var::constant(variable.value()),
        }
    }

    /// `variable` lifted into this value's context: what a layer does with its weights before
    /// combining them with its input. See [`Var::variable`].
    pub fn param(&self, variable: &Variable) -> Var<'t> {
        Var::variable(self.tape, variable)
    }

    /// A constant in this value's context (on its tape, if any, but never differentiated).
    pub fn lift(&self, value: Tensor) -> Var<'t> {
        Var::from_parts(value, self.tape, None)
    }

    /// This value cut from the graph: same tensor, same tape, no gradient flows through it
    /// (TensorFlow's `stop_gradient`).
    pub fn detach(&self) -> Var<'t> {
        self.lift(self.value.clone())
    }

    /// The forward value.
    pub fn value(&self) -> &Tensor {
        &self.value
    }

    /// The forward value, by value.
    pub fn into_value(self) -> Tensor {
        self.value
    }

    /// The shape of the value.
    pub fn shape(&self) -> &[usize] {
        self.value.shape()
    }

    /// The number of axes of the value.
    pub fn ndim(&self) -> usize {
        self.value.ndim()
    }

    /// The number of elements of the value.
    pub fn len(&self) -> usize {
        self.value.len()
    }

    /// Whether the value holds no element.
    pub fn is_empty(&self) -> bool {
        self.value.is_empty()
    }

    /// The single value of a one-element `Var` (a loss, typically).
    ///
    /// # Errors
    /// A [`TensorError`](gradus_tensor::TensorError) when the value does not hold exactly one element.
    pub fn item(&self) -> Result<f32> {
        Ok(self.value.item()?)
    }

    /// The tape this value belongs to, if any.
    pub fn tape(&self) -> Option<&'t Tape> {
        self.tape
    }

    /// Whether gradients can flow to this value (it is a watched value or computed from one).
    /// Custom operations can skip saving tensors for the backward pass when no input is tracked.
    pub fn is_tracked(&self) -> bool {
        self.node.is_some()
    }

    pub(crate) fn node(&self) -> Option<NodeId> {
        self.node
    }

    /// Records a custom differentiable operation: the extension point through which other crates
    /// add fused kernels (a whole-sequence LSTM, Dense with its activation) with hand-written
    /// backward rules.
    ///
    /// `output` is the forward result, already computed from the values of `inputs`. `backward`
    /// receives the gradient of the loss with respect to `output` (shape of `output`) and, for
    /// each input, whether its gradient is needed; it returns one entry per input, in order: the
    /// gradient with respect to that input (its shape exactly) or `None` (not needed, or zero).
    /// The rule should capture what it needs (tensors are cheap to clone) and skip the work for
    /// inputs it is told are not needed.
    ///
    /// When no input is tracked, nothing is recorded and `backward` is dropped unused: the result
    /// is `output` in the inputs' context. The tape of the result is the inputs' tape.
    ///
    /// ```
    /// use gradus_autograd::{Tape, Var, Variable};
    /// use gradus_tensor::Tensor;
    ///
    /// // cube(x) = x^3, with the rule d/dx = 3 x^2.
    /// fn cube<'t>(x: &Var<'t>) -> gradus_autograd::Result<Var<'t>> {
    ///     let out = x.value().map(|v| v * v * v);
    ///     let saved = x.value().clone();
    ///     Var::custom("cube", &[x], out, move |g, _needs| {
    ///         let dx = Tensor::from_vec(
    ///             g.to_vec().iter().zip(saved.to_vec()).map(|(g, x)| g * 3.0 * x * x).collect(),
    ///             saved.shape(),
    ///         )?;
    ///         Ok(vec![Some(dx)])
    ///     })
    /// }
    ///
    /// let v = Variable::new("v", Tensor::from_vec(vec![1.0, 2.0], &[2])?);
    /// let tape = Tape::new();
    /// let y = cube(&tape.watch(&v))?;
    /// assert_eq!(tape.gradient(&y, &[&v])?[0].to_vec(), vec![3.0, 12.0]);
    /// # Ok::<(), gradus_autograd::AutogradError>(())
    /// ```
    ///
    /// # Errors
    /// [`AutogradError::ForeignTape`] when the inputs belong to different tapes. The count and
    /// shapes returned by `backward` are checked during [`Tape::gradient`], which fails with
    /// [`AutogradError::GradientCount`] or [`AutogradError::GradientShape`] naming `op`.
    pub fn custom<F>(
        op: &'static str,
        inputs: &[&Var<'t>],
        output: Tensor,
        backward: F,
    ) -> Result<Var<'t>>
    where
        F: Fn(&Tensor, &[bool]) -> Result<Vec<Option<Tensor>>> + Send + 'static,
    {
        let tape = common_tape(op, inputs)?;
        let tracked = inputs.iter().any(|x| x.node.is_some());
        match tape {
            Some(t) if tracked => {
                let parents = inputs.iter().map(|x| x.node);
                let node = t.push_op(op, output.shape(), parents, Box::new(backward));
                Ok(Var::from_parts(output, Some(t), Some(node)))
            }
            _ => Ok(Var::from_parts(output, tape, None)),
        }
    }

    /// Records a one-input operation whose output `out` was computed from `self`. `build` makes
    /// the rule (output gradient to input gradient) from the input and output values; it is
    /// called only when the operation is recorded, so untracked values pay nothing for it.
    pub(crate) fn unary<B, R>(&self, op: &'static str, out: Tensor, build: B) -> Var<'t>
    where
        B: FnOnce(&Tensor, &Tensor) -> R,
        R: Fn(&Tensor) -> Result<Tensor> + Send + 'static,
    {
        match (self.tape, self.node) {
            (Some(t), Some(node)) => {
                let rule = build(&self.value, &out);
                let backward: BackwardFn = Box::new(move |g, _| Ok(vec![Some(rule(g)?)]));
                let id = t.push_op(op, out.shape(), [Some(node)], backward);
                Var::from_parts(out, Some(t), Some(id))
            }
            _ => Var::from_parts(out, self.tape, None),
        }
    }

    /// Records a two-input operation: checks the tapes, runs `forward` on the values, and when
    /// either input is tracked records the rule made by `build` from `(a, b, out)`.
    pub(crate) fn binary<F, B, R>(
        &self,
        op: &'static str,
        other: &Var<'t>,
        forward: F,
        build: B,
    ) -> Result<Var<'t>>
    where
        F: FnOnce(&Tensor, &Tensor) -> gradus_tensor::Result<Tensor>,
        B: FnOnce(&Tensor, &Tensor, &Tensor) -> R,
        R: Fn(&Tensor, &[bool]) -> Result<Vec<Option<Tensor>>> + Send + 'static,
    {
        let tape = common_tape(op, &[self, other])?;
        let out = forward(&self.value, &other.value)?;
        match tape {
            Some(t) if self.node.is_some() || other.node.is_some() => {
                let rule = build(&self.value, &other.value, &out);
                let parents = [self.node, other.node];
                let node = t.push_op(op, out.shape(), parents, Box::new(rule));
                Ok(Var::from_parts(out, Some(t), Some(node)))
            }
            _ => Ok(Var::from_parts(out, tape, None)),
        }
    }
}

/// The tape shared by `inputs` (`None` if none has one).
pub(crate) fn common_tape<'t>(op: &'static str, inputs: &[&Var<'t>]) -> Result<Option<&'t Tape>> {
    let mut tape: Option<&'t Tape> = None;
    for x in inputs {
        match (tape, x.tape) {
            (None, t) => tape = t,
            (Some(a), Some(b)) if !std::ptr::eq(a, b) => {
                return Err(AutogradError::ForeignTape { op });
            }
            _ => {}
        }
    }
    Ok(tape)
}
