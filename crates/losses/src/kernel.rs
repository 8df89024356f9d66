//! The fused kernel behind every built-in loss: one pass over the rows (last axis) of `y_pred`
//! computing each row's loss and, when a gradient can be asked for, its gradient with respect to
//! the row, recorded as a single custom operation on the tape.

use gradus_autograd::Var;
use gradus_tensor::Tensor;

use crate::error::Result;

/// A row loss: `(y_true row, y_pred row, gradient slot) -> loss`. When the slot is given, the
/// function writes `d loss / d y_pred[c]` into it (it starts zeroed).
pub(crate) trait RowFn: Fn(&[f32], &[f32], Option<&mut [f32]>) -> f64 {}
impl<F: Fn(&[f32], &[f32], Option<&mut [f32]>) -> f64> RowFn for F {}

/// Per-row losses of `y_pred` (shape `[..., C]`, `C > 0`) against `y_true` (the same number of
/// rows, any row width): output shape `[...]`; backward `dx[r, c] = g[r] * drow_r/dx[r, c]`.
///
/// The row gradients are computed in the forward pass only when `y_pred` is tracked, so
/// inference pays for the losses alone.
pub(crate) fn per_row<'t>(
    op: &'static str,
    y_true: &Tensor,
    y_pred: &Var<'t>,
    row: impl RowFn,
) -> Result<Var<'t>> {
    let shape = y_pred.shape().to_vec();
    let (&c, lead) = shape.split_last().expect("callers check the rank");
    let rows: usize = lead.iter().product();
    let t = y_true.to_contiguous();
    let t = t.as_slice().expect("contiguous");
    let width = t.len().checked_div(rows).unwrap_or(0);
    let p = y_pred.value().to_contiguous();
    let p = p.as_slice().expect("contiguous");

    let tracked = y_pred.is_tracked();
    let mut grad = if tracked {
        vec![0.0; p.len()]
    } else {
        Vec::new()
    };
    let mut out = Vec::with_capacity(rows);
    for r in 0..rows {
        let (tr, pr) = (&t[r * width..(r + 1) * width], &p[r * c..(r + 1) * c]);
        let slot = tracked.then(|| &mut grad[r * c..(r + 1) * c]);
        out.push(row(tr, pr, slot) as f32);
    }
    let out = Tensor::from_vec(out, lead)?;
    Ok(Var::custom(op, &[y_pred], out, move |g, _| {
        let g = g.to_contiguous();
        let g = g.as_slice().expect("contiguous");
        let mut dx = Vec::with_capacity(grad.len());
        for (row, &gr) in grad.chunks(c.max(1)).zip(g) {
            dx.extend(row.iter().map(|&d| d * gr));
        }
        Ok(vec![Some(Tensor::from_vec(dx, &shape)?)])
    })?)
}

/// A per-row loss that is the mean over the row of an elementwise loss `f(t, p) -> (loss,
/// d loss / d p)`, as Keras' regression losses and binary cross-entropy (`mean(..., axis=-1)`).
pub(crate) fn mean_of_elements<'t>(
    op: &'static str,
    y_true: &Tensor,
    y_pred: &Var<'t>,
    f: impl Fn(f32, f32) -> (f64, f64),
) -> Result<Var<'t>> {
    per_row(op, y_true, y_pred, |t, p, grad| {
        let n = p.len() as f64;
        let mut sum = 0.0;
        match grad {
            Some(grad) => {
                for ((&t, &p), g) in t.iter().zip(p).zip(grad) {
                    let (l, d) = f(t, p);
                    sum += l;
                    *g = (d / n) as f32;
                }
            }
            None => sum = t.iter().zip(p).map(|(&t, &p)| f(t, p).0).sum(),
        }
        sum / n
    })
}
