//! The tape: an arena of recorded operations, walked in reverse to compute gradients.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::ops::Range;

use gradus_tensor::Tensor;

use crate::error::{AutogradError, Result};
use crate::var::Var;
use crate::variable::{Variable, VariableId};

/// The index of a node in its tape's arena.
pub(crate) type NodeId = usize;

/// A backward rule: given the gradient of the loss with respect to the operation's output, and
/// for each input whether its gradient is needed, the gradients with respect to the inputs (in
/// input order; `None` for an input whose gradient is not needed or is zero).
pub(crate) type BackwardFn = Box<dyn Fn(&Tensor, &[bool]) -> Result<Vec<Option<Tensor>>> + Send>;

/// One recorded value: a leaf (a watched variable or tensor) or the output of an operation.
struct Node {
    /// The operation's name, for error messages (`"leaf"` for leaves).
    op: &'static str,
    /// The output's shape (a range of [`Arena::dims`]): every gradient flowing into this node
    /// must have it.
    shape: Range<usize>,
    /// One entry per input of the operation (a range of [`Arena::edges`]): the input's node,
    /// `None` for an untracked input.
    parents: Range<usize>,
    /// The backward rule; `None` for leaves and after a non-persistent tape was released.
    backward: Option<BackwardFn>,
    /// For leaves created by [`Tape::watch`], the variable watched.
    variable: Option<VariableId>,
}

/// The nodes, with their shapes and parents stored back to back in two shared vectors, so that
/// recording an operation allocates nothing but its rule.
#[derive(Default)]
struct Arena {
    nodes: Vec<Node>,
    edges: Vec<Option<NodeId>>,
    dims: Vec<usize>,
}

impl Arena {
    fn push(
        &mut self,
        op: &'static str,
        shape: &[usize],
        parents: impl IntoIterator<Item = Option<NodeId>>,
        backward: Option<BackwardFn>,
        variable: Option<VariableId>,
    ) -> NodeId {
        let d = self.dims.len();
        self.dims.extend_from_slice(shape);
        let e = self.edges.len();
        self.edges.extend(parents);
        self.nodes.push(Node {
            op,
            shape: d..self.dims.len(),
            parents: e..self.edges.len(),
            backward,
            variable,
        });
        self.nodes.len() - 1
    }

    fn shape(&self, node: NodeId) -> &[usize] {
        &self.dims[self.nodes[node].shape.clone()]
    }

    fn parents(&self, node: NodeId) -> &[Option<NodeId>] {
        &self.edges[self.nodes[node].parents.clone()]
    }
}

/// A record of the operations applied to watched values, from which [`gradient`](Tape::gradient)
/// computes gradients by reverse-mode differentiation: the analogue of Keras' `tf.GradientTape`.
///
/// Values on a tape are [`Var`]s borrowing it. A tape holds no global state, so two tapes can
/// record in two threads at once; a tape is `Send` but not `Sync` (it is meant to be used by one
/// thread at a time). Recording is explicit: only operations with at least one tracked input (a
/// watched [`Variable`] or tensor, or a value computed from one) are recorded; everything else
/// costs nothing more than the tensor operation itself.
///
/// A tape made by [`Tape::new`] answers one [`gradient`](Tape::gradient) call and then releases
/// every tensor its backward rules saved (Keras' default, and what lets an optimizer update the
/// variables in place without copying their buffers). [`Tape::persistent`] keeps them for any
/// number of calls. Gradients are first order: backward rules are not themselves recorded.
///
/// ```
/// use gradus_autograd::{Tape, Variable};
/// use gradus_tensor::Tensor;
///
/// let w = Variable::new("w", Tensor::from_vec(vec![1.0, 2.0, 3.0], &[3])?);
/// let tape = Tape::new();
/// let x = tape.constant(Tensor::from_vec(vec![4.0, 5.0, 6.0], &[3])?);
/// let loss = x.param(&w).mul(&x)?.sum_all(); // loss = sum(w * x)
/// let grads = tape.gradient(&loss, &[&w])?;
/// assert_eq!(grads[0].to_vec(), vec![4.0, 5.0, 6.0]);
/// # Ok::<(), gradus_autograd::AutogradError>(())
/// ```
pub struct Tape {
    arena: RefCell<Arena>,
    persistent: bool,
    released: Cell<bool>,
}

impl std::fmt::Debug for Tape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tape")
            .field("nodes", &self.len())
            .field("persistent", &self.persistent)
            .field("released", &self.released.get())
            .finish()
    }
}

impl Default for Tape {
    fn default() -> Self {
        Tape::new()
    }
}

impl Tape {
    /// A tape that answers one [`gradient`](Tape::gradient) call, then releases what it saved.
    pub fn new() -> Tape {
        Tape::with_persistence(false)
    }

    /// A tape that answers any number of [`gradient`](Tape::gradient) calls.
    pub fn persistent() -> Tape {
        Tape::with_persistence(true)
    }

    fn with_persistence(persistent: bool) -> Tape {
        Tape {
            arena: RefCell::new(Arena::default()),
            persistent,
            released: Cell::new(false),
        }
    }

    /// Whether this tape answers more than one gradient call.
    pub fn is_persistent(&self) -> bool {
        self.persistent
    }

    /// The number of nodes recorded so far (leaves and operations).
    pub fn len(&self) -> usize {
        self.arena.borrow().nodes.len()
    }

    /// Whether nothing has been recorded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Watches `variable`: a value on this tape whose gradient [`gradient`](Tape::gradient) can
    /// return. A non-trainable variable is never differentiated: it comes back as a constant on
    /// this tape. Watching a variable several times is allowed; its gradient is the sum over all
    /// the watched copies.
    pub fn watch(&self, variable: &Variable) -> Var<'_> {
        let value = variable.value();
        if !variable.trainable() {
            return Var::from_parts(value, Some(self), None);
        }
        let node = self.push_leaf(value.shape(), Some(variable.id()));
        Var::from_parts(value, Some(self), Some(node))
    }

    /// Watches a plain tensor (an input, to take gradients with respect to it through
    /// [`gradient_wrt`](Tape::gradient_wrt), as for saliency maps or adversarial examples).
    pub fn watch_tensor(&self, value: Tensor) -> Var<'_> {
        let node = self.push_leaf(value.shape(), None);
        Var::from_parts(value, Some(self), Some(node))
    }

    /// A constant on this tape: never differentiated, but carrying the tape so that a layer
    /// receiving it watches its own variables here (see [`Var::param`]). This is how inputs and
    /// labels enter a training step.
    pub fn constant(&self, value: Tensor) -> Var<'_> {
        Var::from_parts(value, Some(self), None)
    }

    fn push_leaf(&self, shape: &[usize], variable: Option<VariableId>) -> NodeId {
        self.arena
            .borrow_mut()
            .push("leaf", shape, [], None, variable)
    }

    /// Records an operation with the given parents (one per input) and rule.
    pub(crate) fn push_op(
        &self,
        op: &'static str,
        shape: &[usize],
        parents: impl IntoIterator<Item = Option<NodeId>>,
        backward: BackwardFn,
    ) -> NodeId {
        self.arena
            .borrow_mut()
            .push(op, shape, parents, Some(backward), None)
    }

    /// The gradients of `target` with respect to each of `variables`, in order.
    ///
    /// `dtarget/dv`, each with the shape of its variable and contiguous (row-major, so
    /// `as_slice()` is `Some`). A non-scalar `target` is seeded with ones, as TensorFlow does:
    /// the result is the gradient of `sum(target)`.
    ///
    /// **Not connected:** a variable the target does not depend on (never watched on this tape,
    /// non-trainable, or simply not used on the way to `target`) gets a tensor of **zeros** of its
    /// shape, so that the result can be handed to an optimizer as is. Use
    /// [`gradient_opt`](Tape::gradient_opt) to tell "not connected" (`None`, as Keras) apart from
    /// "zero". A variable watched several times gets the sum of the gradients of its copies.
    ///
    /// # Errors
    /// - [`AutogradError::ForeignTape`] when `target` was recorded on another tape;
    /// - [`AutogradError::TapeReleased`] when this tape is not persistent and was already asked;
    /// - errors of backward rules (custom operations returning the wrong count or shapes).
    pub fn gradient(&self, target: &Var<'_>, variables: &[&Variable]) -> Result<Vec<Tensor>> {
        let grads = self.gradient_opt(target, variables)?;
        Ok(grads
            .into_iter()
            .zip(variables)
            .map(|(g, v)| g.unwrap_or_else(|| Tensor::zeros(v.shape())))
            .collect())
    }

    /// As [`gradient`](Tape::gradient), but `None` for a variable the target is not connected to
    /// (Keras' `None` gradient).
    ///
    /// # Errors
    /// As [`gradient`](Tape::gradient).
    pub fn gradient_opt(
        &self,
        target: &Var<'_>,
        variables: &[&Variable],
    ) -> Result<Vec<Option<Tensor>>> {
        self.check_target(target)?;
        let leaves: HashMap<VariableId, Vec<NodeId>> = {
            let arena = self.arena.borrow();
            let mut map: HashMap<VariableId, Vec<NodeId>> = HashMap::new();
            let wanted: Vec<VariableId> = variables.iter().map(|v| v.id()).collect();
            for (i, n) in arena.nodes.iter().enumerate() {
                if let Some(id) = n.variable
                    && wanted.contains(&id)
                {
                    map.entry(id).or_default().push(i);
                }
            }
            map
        };
        let wanted: Vec<NodeId> = leaves.values().flatten().copied().collect();
        let mut grads = self.backprop(target, &wanted)?;
        Ok(variables
            .iter()
            .map(|v| {
                let ids = leaves.get(&v.id())?;
                let mut sum: Option<Tensor> = None;
                for &i in ids {
                    if let Some(g) = grads.get_mut(i).and_then(Option::take) {
                        sum = Some(match sum {
                            None => g,
                            Some(acc) => accumulate(acc, &g),
                        });
                    }
                }
                sum.map(|g| g.to_contiguous())
            })
            .collect())
    }

    /// The gradients of `target` with respect to values on this tape (watched tensors or
    /// intermediate results), `None` where `target` does not depend on the value (an untracked
    /// value included). A non-scalar `target` is seeded with ones.
    ///
    /// # Errors
    /// - [`AutogradError::ForeignTape`] when `target` or one of `sources` belongs to another tape;
    /// - as [`gradient`](Tape::gradient) otherwise.
    pub fn gradient_wrt(
        &self,
        target: &Var<'_>,
        sources: &[&Var<'_>],
    ) -> Result<Vec<Option<Tensor>>> {
        self.check_target(target)?;
        for s in sources {
            if s.tape().is_some_and(|t| !std::ptr::eq(t, self)) {
                return Err(AutogradError::ForeignTape { op: "gradient_wrt" });
            }
        }
        let wanted: Vec<NodeId> = sources.iter().filter_map(|s| s.node()).collect();
        let grads = self.backprop(target, &wanted)?;
        Ok(sources
            .iter()
            .map(|s| {
                let g = s.node().and_then(|i| grads.get(i).cloned().flatten());
                g.map(|g| g.to_contiguous())
            })
            .collect())
    }

    fn check_target(&self, target: &Var<'_>) -> Result<()> {
        if target.tape().is_some_and(|t| !std::ptr::eq(t, self)) {
            return Err(AutogradError::ForeignTape { op: "gradient" });
        }
        if self.released.get() {
            return Err(AutogradError::TapeReleased);
        }
        Ok(())
    }

    /// Reverse pass from `target`: the gradient of every node in `wanted` (indexed by node id,
    /// `None` where not connected). Only nodes on a path from a wanted node to `target` run their
    /// backward rule, and they are told which inputs need a gradient.
    fn backprop(&self, target: &Var<'_>, wanted: &[NodeId]) -> Result<Vec<Option<Tensor>>> {
        let result = self.backprop_inner(target, wanted);
        if !self.persistent {
            self.released.set(true);
            for n in self.arena.borrow_mut().nodes.iter_mut() {
                n.backward = None;
            }
        }
        result
    }

    fn backprop_inner(&self, target: &Var<'_>, wanted: &[NodeId]) -> Result<Vec<Option<Tensor>>> {
        let Some(root) = target.node() else {
            return Ok(Vec::new());
        };
        let arena = self.arena.borrow();
        let n = root + 1;
        // Forward sweep: which nodes depend on a wanted node (only those need gradients).
        let mut keep = vec![false; n];
        for &w in wanted {
            if w < n {
                keep[w] = true;
            }
        }
        let mut needed = keep.clone();
        for i in 0..n {
            if !needed[i] && arena.parents(i).iter().flatten().any(|&p| needed[p]) {
                needed[i] = true;
            }
        }
        let mut grads: Vec<Option<Tensor>> = vec![None; n];
        if !needed[root] {
            return Ok(grads);
        }
        grads[root] = Some(Tensor::ones(target.shape()));
        let mut needs = Vec::new();
        for i in (0..n).rev() {
            let node = &arena.nodes[i];
            let parents = arena.parents(i);
            let Some(backward) = node.backward.as_ref() else {
                continue; // a leaf: its gradient stays in `grads`
            };
            let Some(g) = grads[i].take() else { continue };
            needs.clear();
            needs.extend(parents.iter().map(|p| p.is_some_and(|p| needed[p])));
            if needs.iter().any(|&b| b) {
                let input_grads = backward(&g, &needs)?;
                if input_grads.len() != parents.len() {
                    return Err(AutogradError::GradientCount {
                        op: node.op,
                        expected: parents.len(),
                        got: input_grads.len(),
                    });
                }
                for (k, (gp, &p)) in input_grads.into_iter().zip(parents).enumerate() {
                    let (Some(gp), Some(p)) = (gp, p) else {
                        continue;
                    };
                    if !needed[p] {
                        continue;
                    }
                    if gp.shape() != arena.shape(p) {
                        return Err(AutogradError::GradientShape {
                            op: node.op,
                            input: k,
                            expected: arena.shape(p).to_vec(),
                            got: gp.shape().to_vec(),
                        });
                    }
                    grads[p] = Some(match grads[p].take() {
                        None => gp,
                        Some(acc) => accumulate(acc, &gp),
                    });
                }
            }
            if keep[i] {
                grads[i] = Some(g);
            }
        }
        Ok(grads)
    }
}

/// `acc + g` for tensors of the same shape, in place in `acc`'s buffer when no one else holds it.
pub(crate) fn accumulate(mut acc: Tensor, g: &Tensor) -> Tensor {
    acc.view_mut().zip_mut_with(&g.view(), |a, &b| *a += b);
    acc
}
