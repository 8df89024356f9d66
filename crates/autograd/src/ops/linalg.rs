//! Matrix products.

use gradus_tensor::Tensor;

use crate::error::Result;
use crate::var::Var;

impl<'t> Var<'t> {
    /// Matrix product: `out = a b`.
    ///
    /// Shapes: `[m, k] x [k, n] -> [m, n]`; batched `[b, m, k] x [b, k, n] -> [b, m, n]` (a batch
    /// of 1 on either side broadcasts); `[b, m, k] x [k, n] -> [b, m, n]` (every batch by the same
    /// matrix, as a Dense layer on a sequence); a 1-D operand is a row (left) or a column (right)
    /// vector whose axis is removed from the result, as in NumPy. Gradients: `da = g b^T`,
    /// `db = a^T g`, summed over broadcast batches. Transposed operands are strided views, never
    /// copies.
    ///
    /// # Errors
    /// A tensor error naming both shapes when the inner dimensions differ or the ranks are not
    /// supported.
    pub fn matmul(&self, other: &Var<'t>) -> Result<Var<'t>> {
        if self.ndim() == 1 {
            let k = self.shape()[0];
            let out = self.reshape(&[1, k])?.matmul(other)?;
            return out.squeeze_axis(-2);
        }
        if other.ndim() == 1 {
            let k = other.shape()[0];
            let out = self.matmul(&other.reshape(&[k, 1])?)?;
            return out.squeeze_axis(-1);
        }
        self.binary("matmul", other, Tensor::matmul, |a, b, _| {
            let (a, b) = (a.clone(), b.clone());
            move |g, needs| {
                let da = if needs[0] {
                    Some(g.matmul(&b.transpose()?)?.sum_to_shape(a.shape())?)
                } else {
                    None
                };
                let db = if !needs[1] {
                    None
                } else if a.ndim() == 3 && b.ndim() == 2 {
                    // sum over the batch of a_i^T g_i, as one product of the flattened batch
                    let (rows, k, n) = (a.shape()[0] * a.shape()[1], a.shape()[2], g.shape()[2]);
                    let a2 = a.reshape(&[rows, k])?;
                    let g2 = g.reshape(&[rows, n])?;
                    Some(a2.transpose()?.matmul(&g2)?)
                } else {
                    Some(a.transpose()?.matmul(g)?.sum_to_shape(b.shape())?)
                };
                Ok(vec![da, db])
            }
        })
    }
}
