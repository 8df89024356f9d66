//! Matrix products through [`matrixmultiply::sgemm`], or on x86-64 CPUs with AVX2 and FMA
//! through this crate's own kernel (`avx2`: vectorized packing, and the same sums as
//! `matrixmultiply` up to 256 values of the inner index, more evenly blocked beyond); both take
//! arbitrary strides: transposed and sliced views are multiplied in place, without copies.

use ndarray::{ArrayViewD, IxDyn};

use crate::broadcast::broadcast_shapes_for;
use crate::buffer::{take, take_zeroed};
use crate::error::{Result, TensorError};
use crate::parallel;
use crate::tensor::Tensor;

#[cfg(target_arch = "x86_64")]
mod avx2;

/// A read-only strided matrix: a pointer to element `[0, 0]` and its row and column strides.
#[derive(Clone, Copy, Debug)]
struct MatPtr {
    ptr: *const f32,
    rs: isize,
    cs: isize,
}

// SAFETY: a `MatPtr` is only read through, and the kernels that share one between threads keep
// the matrix alive and unmodified until every thread is done.
unsafe impl Send for MatPtr {}
// SAFETY: as for `Send`: shared `MatPtr`s are only read through.
unsafe impl Sync for MatPtr {}

/// The output of a product split over threads: each piece writes its own rows or columns of C,
/// or (split over the inner index) its own blocks' part of a buffer of sums, then its own rows
/// of C.
#[derive(Clone, Copy)]
struct OutPtr(*mut f32);
impl OutPtr {
    /// The pointer (a method, so that closures capture the whole `Send` wrapper).
    fn get(self) -> *mut f32 {
        self.0
    }
}
// SAFETY: the pieces of one product write disjoint sets of elements (see `sgemm` and
// `split_inner`).
unsafe impl Send for OutPtr {}
// SAFETY: as for `Send`.
unsafe impl Sync for OutPtr {}

/// Products with fewer multiply-adds than this (about 15 microseconds of one core) run on the
/// calling thread. Handing a piece to a spinning worker costs about a microsecond
/// ([`parallel`]), but each piece packs its own copy of the shared operand, so a
/// product must be a few times larger than that to gain.
const PARALLEL_MIN_MACS: usize = 1 << 20;

/// `C <- alpha A B + beta C` for an `m x k` A, `k x n` B and `m x n` C.
///
/// With several [threads](crate::parallel) and enough work, the product is cut in one of two
/// ways, neither of which changes a bit of the result:
/// - **over the rows or columns of C**, the longer of the two, in blocks (multiples of 8, the
///   kernel's register tile) computed by separate kernel calls: each element's dot product then
///   runs the same sequence of operations as with one call;
/// - **over the inner index**, for a C that is small next to it (`k >= 4 max(m, n)`, as the
///   `[128, 784] @ [784, 128]` forward product of a Dense layer) on the AVX2 kernel, whose
///   sums run in blocks of the inner index ([`avx2::block_depth`]): each thread takes a run of
///   whole blocks, the first one writing C and the others each block's sums to a buffer of
///   their own, which are then added to C in block order, the additions the one-call kernel
///   makes (see [`split_inner`]). Each thread then reads only its rows of B, and packs only
///   its part of both operands, where a split over the rows of C would have every thread pack
///   all of B: a Dense kernel's rows stay with the thread that updates them in the optimizer
///   step (whose pieces are contiguous rows too), instead of moving between the cores' caches
///   at every step.
///
/// # Safety
/// Every element `a.ptr + i*a.rs + p*a.cs` (`i < m`, `p < k`) must be readable, likewise for B,
/// and every `c + i*rsc + j*csc` writable, distinct for distinct `(i, j)`, and not aliasing A or B.
unsafe fn sgemm(
    (m, k, n): (usize, usize, usize),
    alpha: f32,
    a: MatPtr,
    b: MatPtr,
    beta: f32,
    c: *mut f32,
    (rsc, csc): (isize, isize),
) {
    if m == 0 || n == 0 {
        return;
    }
    let big = m * n * k >= PARALLEL_MIN_MACS;
    #[cfg(target_arch = "x86_64")]
    let depth = avx2::block_depth(k);
    #[cfg(target_arch = "x86_64")]
    if big && avx2::available() && alpha == 1.0 && beta == 0.0 && k >= 4 * m.max(n) {
        let pieces = parallel::pieces(k.div_ceil(depth), 1);
        if pieces > 1 {
            // SAFETY: per this function's contract.
            unsafe { split_inner((m, k, n), depth, pieces, a, b, OutPtr(c), (rsc, csc)) };
            return;
        }
    }
    let by_rows = m >= n;
    let len = if by_rows { m } else { n };
    let pieces = if big { parallel::pieces(len, 16) } else { 1 };
    let per = len.div_ceil(pieces).next_multiple_of(8);
    let out = OutPtr(c);
    let block = |i: usize| {
        let lo = i * per;
        let hi = len.min(lo + per);
        let (mut a, mut b, mut c, mut mm, mut nn) = (a, b, out.get(), m, n);
        // SAFETY: `lo < len`, so the offsets stay inside A (rows) or B (columns) and C, per this
        // function's contract; the blocks `lo..hi` are disjoint, so no two calls write the same
        // element of C.
        unsafe {
            if by_rows {
                a.ptr = a.ptr.offset(lo as isize * a.rs);
                c = c.offset(lo as isize * rsc);
                mm = hi - lo;
            } else {
                b.ptr = b.ptr.offset(lo as isize * b.cs);
                c = c.offset(lo as isize * csc);
                nn = hi - lo;
            }
            // Both kernels accept any strides for A and B, and with k == 0 only scale C by
            // beta.
            #[cfg(target_arch = "x86_64")]
            if avx2::available() {
                avx2::sgemm(((mm, k, nn), depth), alpha, a, b, beta, c, (rsc, csc));
                return;
            }
            matrixmultiply::sgemm(
                mm, k, nn, alpha, a.ptr, a.rs, a.cs, b.ptr, b.rs, b.cs, beta, c, rsc, csc,
            );
        }
    };
    parallel::run(len.div_ceil(per), block);
}

/// `C <- A B` split over the inner index: `pieces` runs of whole blocks of `depth` values
/// (the blocks of the one-call kernel), as even as whole blocks allow. The first run is an
/// ordinary kernel call into C (its blocks added in order, the first one written); every
/// block of the later runs is a kernel call of one block with `alpha = 1, beta = 0` into a
/// buffer of its own, which stores the block's sums `acc` exactly; then C's rows, split over
/// the threads, get `c <- c + acc` for those blocks in order: the `fma(1, acc, c)` that the
/// one-call kernel computes for them. The same bits as one call, for any number of pieces.
///
/// # Safety
/// As for [`sgemm`]; the AVX2 kernel must be [available](avx2::available), and
/// `depth == avx2::block_depth(k)`.
#[cfg(target_arch = "x86_64")]
unsafe fn split_inner(
    (m, k, n): (usize, usize, usize),
    depth: usize,
    pieces: usize,
    a: MatPtr,
    b: MatPtr,
    c: OutPtr,
    (rsc, csc): (isize, isize),
) {
    let blocks = k.div_ceil(depth);
    let first_block = |piece: usize| piece * blocks / pieces;
    // The blocks after the first run, each with an m x n buffer (row-major) of its sums.
    let later = first_block(1);
    let mut sums = take((blocks - later) * m * n);
    let out = OutPtr(sums.as_mut_ptr());
    // `C' <- A[:, p0..p0 + kb] B[p0..p0 + kb, :]` (alpha 1, beta 0) in the product's blocks.
    let call = |p0: usize, kb: usize, dst: *mut f32, strides: (isize, isize)| {
        // The whole `Send` wrappers (a closure would capture just their pointer fields).
        let (a, b) = (a, b);
        // SAFETY: `p0 + kb <= k`, so the offsets stay inside A's columns and B's rows; `dst`
        // is C, or a buffer of m x n values inside `sums` that no other call writes.
        unsafe {
            let a = MatPtr {
                ptr: a.ptr.offset(p0 as isize * a.cs),
                ..a
            };
            let b = MatPtr {
                ptr: b.ptr.offset(p0 as isize * b.rs),
                ..b
            };
            avx2::sgemm(((m, kb, n), depth), 1.0, a, b, 0.0, dst, strides);
        }
    };
    parallel::run(pieces, |piece| {
        let (lo, hi) = (first_block(piece), first_block(piece + 1));
        if piece == 0 {
            // The first run: one call over its blocks, into C (never the last block).
            call(0, hi * depth, c.get(), (rsc, csc));
        } else {
            for block in lo..hi {
                let p0 = block * depth;
                // SAFETY: `block - later` indexes one of the `blocks - later` buffers.
                let dst = unsafe { out.get().add((block - later) * m * n) };
                call(p0, depth.min(k - p0), dst, (n as isize, 1));
            }
        }
    });
    let all = &sums;
    let rows_per = m.div_ceil(parallel::pieces(m, 8));
    parallel::run(m.div_ceil(rows_per), |piece| {
        for i in piece * rows_per..m.min((piece + 1) * rows_per) {
            for block in all.chunks_exact(m * n) {
                let acc = &block[i * n..(i + 1) * n];
                // SAFETY: row `i` of C is written by this piece only (the pieces own disjoint
                // rows), and its n elements are elements of C.
                unsafe {
                    let row = c.get().offset(i as isize * rsc);
                    if csc == 1 {
                        let row = std::slice::from_raw_parts_mut(row, n);
                        row.iter_mut().zip(acc).for_each(|(c, &s)| *c += s);
                    } else {
                        for (j, &s) in acc.iter().enumerate() {
                            *row.offset(j as isize * csc) += s;
                        }
                    }
                }
            }
        }
    });
    crate::buffer::give(sums);
}

fn matmul_error(a: &Tensor, b: &Tensor, reason: String) -> TensorError {
    TensorError::IncompatibleShapes {
        op: "matmul",
        lhs: a.shape().to_vec(),
        rhs: b.shape().to_vec(),
        reason,
    }
}

impl Tensor {
    /// Matrix product with NumPy's `matmul` semantics: `out[..., i, j] = sum_p a[..., i, p] b[..., p, j]`.
    ///
    /// Shapes: `[m, k] @ [k, n] -> [m, n]`; batched `[..., m, k] @ [..., k, n] -> [..., m, n]` where
    /// the batch axes broadcast (a batch of 1, or a missing batch, is shared: `[b, m, k] @ [k, n]`
    /// multiplies every batch by the same matrix). A 1-D left operand is a row vector and a 1-D right
    /// operand a column vector, whose added axis is removed from the result. Zero-length axes
    /// give empty or zero results.
    ///
    /// Every product runs on the operands' strides, so [`transpose`](Tensor::transpose) /
    /// [`permute`](Tensor::permute) / slice views are not copied: on x86-64 CPUs with AVX2 and
    /// FMA through this crate's kernel, elsewhere through `matrixmultiply::sgemm`. On the AVX2
    /// kernel each element is a chain of `fma` over blocks of the inner index, the blocks added
    /// in order: one block up to 256 values; beyond, the fewest blocks of at most 256, as even as
    /// multiples of 4 allow (`784 = 4 x 196`; `matrixmultiply` cuts at every 256). With several
    /// [threads](crate::parallel) a large product is split over its rows or columns, or, when
    /// the output is small next to the inner length, over whole blocks of the inner index: the
    /// bits are the same for any thread count.
    ///
    /// ```
    /// use gradus_tensor::Tensor;
    ///
    /// let a = Tensor::from_vec(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3])?;
    /// let b = Tensor::ones(&[3, 1]);
    /// assert_eq!(a.matmul(&b)?.to_vec(), vec![6.0, 15.0]);
    /// // a^T a, with the transpose as a strided view:
    /// assert_eq!(a.transpose()?.matmul(&a)?.shape(), &[3, 3]);
    /// # Ok::<(), gradus_tensor::TensorError>(())
    /// ```
    ///
    /// # Errors
    /// [`TensorError::IncompatibleShapes`] naming both shapes when either is rank 0, the inner
    /// lengths differ, or the batch axes do not broadcast.
    pub fn matmul(&self, other: &Tensor) -> Result<Tensor> {
        if self.ndim() == 0 || other.ndim() == 0 {
            return Err(matmul_error(
                self,
                other,
                "operands must have rank >= 1".to_string(),
            ));
        }
        let a = if self.ndim() == 1 {
            self.expand_dims(0)?
        } else {
            self.clone()
        };
        let b = if other.ndim() == 1 {
            other.expand_dims(-1)?
        } else {
            other.clone()
        };
        let (ra, rb) = (a.ndim(), b.ndim());
        let (m, k) = (a.shape()[ra - 2], a.shape()[ra - 1]);
        let (k2, n) = (b.shape()[rb - 2], b.shape()[rb - 1]);
        if k != k2 {
            return Err(matmul_error(
                self,
                other,
                format!("the inner lengths differ ({k} vs {k2})"),
            ));
        }
        let batch = broadcast_shapes_for("matmul", &a.shape()[..ra - 2], &b.shape()[..rb - 2])
            .map_err(|_| {
                matmul_error(self, other, "the batch axes do not broadcast".to_string())
            })?;
        let with = |tail: [usize; 2]| -> Vec<usize> { batch.iter().copied().chain(tail).collect() };
        let av = a
            .data
            .broadcast(IxDyn(&with([m, k])))
            .expect("batch shape checked");
        let bv = b
            .data
            .broadcast(IxDyn(&with([k, n])))
            .expect("batch shape checked");
        let len = batch.iter().product::<usize>() * m * n;
        // Every element is written by a product (beta = 0), except when k == 0: empty sums.
        let mut out = if k == 0 { take_zeroed(len) } else { take(len) };
        batched_gemm(&av, &bv, &batch, (m, k, n), &mut out);
        let mut shape = with([m, n]);
        if other.ndim() == 1 {
            shape.pop();
        }
        if self.ndim() == 1 {
            let at = shape.len() - if other.ndim() == 1 { 1 } else { 2 };
            shape.remove(at);
        }
        Ok(Tensor::from_parts(out, &shape))
    }

    /// [`matmul`](Tensor::matmul) of the operands, each optionally with its last two axes swapped
    /// first (as strided views, never copied): `op(a) @ op(b)`.
    ///
    /// ```
    /// use gradus_tensor::Tensor;
    ///
    /// let x = Tensor::ones(&[32, 784]);
    /// let dy = Tensor::ones(&[32, 128]);
    /// // The Dense kernel gradient x^T @ dy:
    /// assert_eq!(x.matmul_t(&dy, true, false)?.shape(), &[784, 128]);
    /// # Ok::<(), gradus_tensor::TensorError>(())
    /// ```
    ///
    /// # Errors
    /// [`TensorError::Rank`] when a transposed operand has rank below 2; otherwise as `matmul`.
    pub fn matmul_t(&self, other: &Tensor, transpose_a: bool, transpose_b: bool) -> Result<Tensor> {
        let a = if transpose_a {
            self.transpose()?
        } else {
            self.clone()
        };
        let b = if transpose_b {
            other.transpose()?
        } else {
            other.clone()
        };
        a.matmul(&b)
    }
}

/// For each batch index, `out[batch] = a[batch] @ b[batch]` (`out` contiguous; its contents are
/// overwritten, or left as they are when `k == 0`, where the caller passes zeros).
fn batched_gemm(
    a: &ArrayViewD<'_, f32>,
    b: &ArrayViewD<'_, f32>,
    batch: &[usize],
    (m, k, n): (usize, usize, usize),
    out: &mut [f32],
) {
    if m * n == 0 || k == 0 {
        return; // `out` is empty, or every product is an empty sum: zero.
    }
    let nb = batch.len();
    let (sa, sb) = (a.strides(), b.strides());
    let mut idx = vec![0usize; nb];
    for c in out.chunks_exact_mut(m * n) {
        let off = |s: &[isize]| -> isize { idx.iter().zip(s).map(|(&i, &s)| i as isize * s).sum() };
        // SAFETY: `idx` is a valid batch index of both broadcast views, so the offsets stay
        // inside their buffers and every matrix element reached through the strides is one of
        // the views' elements; `c` is a distinct contiguous m x n block of `out`.
        unsafe {
            let am = MatPtr {
                ptr: a.as_ptr().offset(off(sa)),
                rs: sa[nb],
                cs: sa[nb + 1],
            };
            let bm = MatPtr {
                ptr: b.as_ptr().offset(off(sb)),
                rs: sb[nb],
                cs: sb[nb + 1],
            };
            sgemm((m, k, n), 1.0, am, bm, 0.0, c.as_mut_ptr(), (n as isize, 1));
        }
        // Odometer increment of the batch index.
        for d in (0..nb).rev() {
            idx[d] += 1;
            if idx[d] < batch[d] {
                break;
            }
            idx[d] = 0;
        }
    }
}

/// General matrix multiply into an existing buffer: `C <- alpha A B + beta C`.
///
/// Shapes: `a` is `[m, k]`, `b` is `[k, n]`, `c` is `[m, n]`; all three may be strided views
/// (a transposed operand is not copied). `c` is written in place (its buffer is first made unique
/// if it is shared with clones, as [`Tensor::as_slice_mut`] does). With `beta == 0` the old
/// contents of `c` are ignored, NaNs included.
///
/// ```
/// use gradus_tensor::{gemm, Tensor};
///
/// let a = Tensor::ones(&[2, 3]);
/// let b = Tensor::ones(&[3, 2]);
/// let mut c = Tensor::ones(&[2, 2]);
/// gemm(2.0, &a, &b, 1.0, &mut c)?; // c = 2 * 3 + 1
/// assert_eq!(c.to_vec(), vec![7.0; 4]);
/// # Ok::<(), gradus_tensor::TensorError>(())
/// ```
///
/// # Errors
/// [`TensorError::Rank`] when an operand is not 2-D; [`TensorError::IncompatibleShapes`] naming
/// the shapes when the inner lengths differ or `c` is not `[m, n]`.
pub fn gemm(alpha: f32, a: &Tensor, b: &Tensor, beta: f32, c: &mut Tensor) -> Result<()> {
    for t in [a, b, &*c] {
        if t.ndim() != 2 {
            return Err(TensorError::Rank {
                op: "gemm",
                expected: "2-D operands",
                got: t.shape().to_vec(),
            });
        }
    }
    let (m, k) = (a.shape()[0], a.shape()[1]);
    let (k2, n) = (b.shape()[0], b.shape()[1]);
    if k != k2 {
        return Err(TensorError::IncompatibleShapes {
            op: "gemm",
            lhs: a.shape().to_vec(),
            rhs: b.shape().to_vec(),
            reason: format!("the inner lengths differ ({k} vs {k2})"),
        });
    }
    if c.shape() != [m, n] {
        return Err(TensorError::IncompatibleShapes {
            op: "gemm",
            lhs: c.shape().to_vec(),
            rhs: vec![m, n],
            reason: "the output must have the shape of A B".to_string(),
        });
    }
    let (sa, sb) = (a.data.strides(), b.data.strides());
    let am = MatPtr {
        ptr: a.data.as_ptr(),
        rs: sa[0],
        cs: sa[1],
    };
    let bm = MatPtr {
        ptr: b.data.as_ptr(),
        rs: sb[0],
        cs: sb[1],
    };
    // `view_mut` makes the buffer unique (copy on write), so C aliases neither A nor B, and an
    // owned array never has overlapping elements.
    let mut cv = c.view_mut();
    let (rsc, csc) = (cv.strides()[0], cv.strides()[1]);
    // SAFETY: the pointers and strides come from live arrays of the checked shapes; C is unique.
    unsafe {
        sgemm((m, k, n), alpha, am, bm, beta, cv.as_mut_ptr(), (rsc, csc));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Rng;

    fn naive(a: &Tensor, b: &Tensor) -> Vec<f32> {
        let (m, k, n) = (a.shape()[0], a.shape()[1], b.shape()[1]);
        let mut out = vec![0.0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                let mut s = 0.0f64;
                for p in 0..k {
                    s += a.get(&[i, p]).unwrap() as f64 * b.get(&[p, j]).unwrap() as f64;
                }
                out[i * n + j] = s as f32;
            }
        }
        out
    }

    #[test]
    fn matches_naive_with_transposed_views() {
        let mut rng = Rng::seed_from_u64(1);
        let a = Tensor::rand_uniform(&[17, 5], -1.0, 1.0, &mut rng);
        let b = Tensor::rand_uniform(&[7, 5], -1.0, 1.0, &mut rng);
        let bt = b.transpose().unwrap();
        let got = a.matmul(&bt).unwrap();
        let want = Tensor::from_vec(naive(&a, &bt), &[17, 7]).unwrap();
        assert!(got.allclose(&want, 1e-5, 1e-6));
        assert!(
            a.matmul_t(&b, false, true)
                .unwrap()
                .allclose(&want, 1e-5, 1e-6)
        );
    }

    /// `C <- alpha A B + beta C` through this module's `sgemm` and through
    /// `matrixmultiply::sgemm` directly, for A, B and C in every layout (row- or column-major).
    fn both_kernels(
        (m, k, n): (usize, usize, usize),
        (alpha, beta): (f32, f32),
        layouts: (bool, bool, bool),
        rng: &mut Rng,
    ) -> (Vec<f32>, Vec<f32>) {
        let strides = |rows: usize, cols: usize, row_major: bool| -> (isize, isize) {
            if row_major {
                (cols as isize, 1)
            } else {
                (1, rows as isize)
            }
        };
        let a = Tensor::rand_uniform(&[m * k], -1.0, 1.0, rng).to_vec();
        let b = Tensor::rand_uniform(&[k * n], -1.0, 1.0, rng).to_vec();
        let c0 = Tensor::rand_uniform(&[m * n], -1.0, 1.0, rng).to_vec();
        let (sa, sb, sc) = (
            strides(m, k, layouts.0),
            strides(k, n, layouts.1),
            strides(m, n, layouts.2),
        );
        let (mut ours, mut theirs) = (c0.clone(), c0);
        let am = MatPtr {
            ptr: a.as_ptr(),
            rs: sa.0,
            cs: sa.1,
        };
        let bm = MatPtr {
            ptr: b.as_ptr(),
            rs: sb.0,
            cs: sb.1,
        };
        // SAFETY: the buffers hold m x k, k x n and m x n elements in the given layouts.
        unsafe {
            sgemm((m, k, n), alpha, am, bm, beta, ours.as_mut_ptr(), sc);
            matrixmultiply::sgemm(
                m,
                k,
                n,
                alpha,
                am.ptr,
                am.rs,
                am.cs,
                bm.ptr,
                bm.rs,
                bm.cs,
                beta,
                theirs.as_mut_ptr(),
                sc.0,
                sc.1,
            );
        }
        (ours, theirs)
    }

    /// A, B and C, row-major.
    #[cfg(target_arch = "x86_64")]
    type Operands = (Vec<f32>, Vec<f32>, Vec<f32>);

    /// This module's `sgemm` on random A, B and C in the given layouts: C after the call (in
    /// its layout), and A, B and C before it, row-major.
    #[cfg(target_arch = "x86_64")]
    fn our_kernel(
        (m, k, n): (usize, usize, usize),
        (alpha, beta): (f32, f32),
        (ra, rb, rc): (bool, bool, bool),
        rng: &mut Rng,
    ) -> (Vec<f32>, Operands) {
        let a = Tensor::rand_uniform(&[m, k], -1.0, 1.0, rng);
        let b = Tensor::rand_uniform(&[k, n], -1.0, 1.0, rng);
        let c = Tensor::rand_uniform(&[m, n], -1.0, 1.0, rng);
        // A column-major matrix: the transpose of a row-major one, viewed back.
        let laid = |t: &Tensor, row_major: bool| {
            if row_major {
                t.clone()
            } else {
                t.transpose().unwrap().to_contiguous().transpose().unwrap()
            }
        };
        let mut out = laid(&c, rc);
        gemm(alpha, &laid(&a, ra), &laid(&b, rb), beta, &mut out).unwrap();
        let out = if rc {
            out.to_vec()
        } else {
            out.transpose().unwrap().to_vec()
        };
        (out, (a.to_vec(), b.to_vec(), c.to_vec()))
    }

    /// The sums the module documents for `C <- alpha A B + beta C` (A, B and C row-major), one
    /// element at a time: on CPUs with AVX2 and FMA, `fma` chains over the blocks of
    /// `avx2::block_depth(k)`, each block's sums added to C in order.
    #[cfg(target_arch = "x86_64")]
    fn documented_sums(
        (m, k, n): (usize, usize, usize),
        (alpha, beta): (f32, f32),
        (a, b): (&[f32], &[f32]),
        c: &mut [f32],
    ) {
        let depth = avx2::block_depth(k);
        for i in 0..m {
            for j in 0..n {
                let c = &mut c[i * n + j];
                if k == 0 {
                    *c = if beta == 0.0 { 0.0 } else { *c * beta };
                }
                for p0 in (0..k).step_by(depth) {
                    let mut acc = 0.0f32;
                    for p in p0..k.min(p0 + depth) {
                        acc = a[i * k + p].mul_add(b[p * n + j], acc);
                    }
                    *c = match (p0, beta) {
                        (0, 0.0) => alpha * acc,
                        (0, beta) => alpha.mul_add(acc, *c * beta),
                        _ => alpha.mul_add(acc, *c),
                    };
                }
            }
        }
    }

    /// Shapes over one and several blocks of the inner index, wide, tall and narrow.
    const SHAPES: [(usize, usize, usize); 11] = [
        (1, 1, 1),
        (5, 3, 7),
        (16, 8, 6),
        (17, 9, 13),
        (40, 300, 23),
        (33, 520, 70),
        (130, 20, 9),
        (7, 1030, 130),
        (1100, 3, 5),
        // A narrow C over several blocks of the inner index: the lanes run down its
        // columns, and the later blocks add to what the first wrote.
        (64, 520, 10),
        (130, 300, 5),
    ];

    #[test]
    fn same_bits_as_matrixmultiply_over_one_block_in_every_layout() {
        let mut rng = Rng::seed_from_u64(7);
        for &shape in SHAPES.iter().filter(|s| s.1 <= 256) {
            for layout in 0..8 {
                let layouts = (layout & 1 == 0, layout & 2 == 0, layout & 4 == 0);
                for beta in [0.0, 1.0, 0.5] {
                    let (ours, theirs) = both_kernels(shape, (1.0, beta), layouts, &mut rng);
                    let same = ours
                        .iter()
                        .zip(&theirs)
                        .all(|(x, y)| x.to_bits() == y.to_bits());
                    assert!(same, "{shape:?} layouts {layouts:?} beta {beta}");
                }
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_documented_sums_in_every_layout() {
        if !avx2::available() {
            return;
        }
        let mut rng = Rng::seed_from_u64(17);
        for &(m, k, n) in &SHAPES {
            for layout in 0..8 {
                let layouts = (layout & 1 == 0, layout & 2 == 0, layout & 4 == 0);
                for (alpha, beta) in [(1.0, 0.0), (1.0, 1.0), (1.0, 0.5), (-1.5, 0.25)] {
                    let (ours, inputs) = our_kernel((m, k, n), (alpha, beta), layouts, &mut rng);
                    let (a, b, mut want) = inputs;
                    documented_sums((m, k, n), (alpha, beta), (&a, &b), &mut want);
                    // `ours` is in C's layout; `want` row-major.
                    for i in 0..m {
                        for j in 0..n {
                            let at = if layouts.2 { i * n + j } else { j * m + i };
                            assert_eq!(
                                ours[at].to_bits(),
                                want[i * n + j].to_bits(),
                                "{:?} layouts {layouts:?} alpha {alpha} beta {beta} at ({i}, {j})",
                                (m, k, n)
                            );
                        }
                    }
                }
            }
        }
    }

    /// The split over the inner index, called directly on shapes small enough for Miri (the
    /// products that take it in use are above the threshold for splitting): every number of
    /// pieces, on the calling thread and on the pool, gives the bits of one kernel call, into a
    /// row- and a column-major C.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn inner_split_same_bits_as_one_call() {
        if !avx2::available() {
            return;
        }
        let _count = crate::parallel::tests::COUNT
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let mut rng = Rng::seed_from_u64(21);
        for &(m, k, n) in &[(3, 600, 5), (9, 1100, 2)] {
            let a = Tensor::rand_uniform(&[m, k], -1.0, 1.0, &mut rng).to_vec();
            let b = Tensor::rand_uniform(&[k, n], -1.0, 1.0, &mut rng).to_vec();
            let (am, bm) = (
                MatPtr {
                    ptr: a.as_ptr(),
                    rs: k as isize,
                    cs: 1,
                },
                MatPtr {
                    ptr: b.as_ptr(),
                    rs: n as isize,
                    cs: 1,
                },
            );
            let depth = avx2::block_depth(k);
            for strides in [(n as isize, 1), (1, m as isize)] {
                let mut one = vec![f32::NAN; m * n];
                // SAFETY: the buffers hold m x k, k x n and m x n values in these layouts.
                unsafe {
                    avx2::sgemm(
                        ((m, k, n), depth),
                        1.0,
                        am,
                        bm,
                        0.0,
                        one.as_mut_ptr(),
                        strides,
                    )
                };
                for threads in [1, 2, 3] {
                    parallel::set_num_threads(threads);
                    for pieces in 2..=k.div_ceil(depth) {
                        let mut split = vec![f32::NAN; m * n];
                        let c = OutPtr(split.as_mut_ptr());
                        // SAFETY: as above; `depth` is the kernel's for k.
                        unsafe { split_inner((m, k, n), depth, pieces, am, bm, c, strides) };
                        let same = one
                            .iter()
                            .zip(&split)
                            .all(|(x, y)| x.to_bits() == y.to_bits());
                        assert!(
                            same,
                            "{m}x{k}x{n} {strides:?}: {pieces} pieces, {threads} threads"
                        );
                    }
                }
            }
        }
        parallel::set_num_threads(0);
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn block_depths_are_even_and_at_most_kc() {
        for k in 1..3000 {
            let depth = avx2::block_depth(k);
            let blocks = k.div_ceil(depth);
            assert!(depth <= 256, "k {k}: depth {depth}");
            assert_eq!(blocks, k.div_ceil(256), "k {k}: the fewest blocks");
            if k > 256 {
                assert_eq!(depth % 4, 0, "k {k}");
                // The last block is the shortest, by less than 4 per block.
                let last = k - (blocks - 1) * depth;
                assert!(
                    last <= depth && depth - last < 4 * blocks,
                    "k {k}: last {last}"
                );
            }
        }
        assert_eq!(avx2::block_depth(784), 196);
    }

    /// A narrow C with contiguous rows (its tiles are turned and stored with masks), over one
    /// block of the inner index (as `matrixmultiply`) and two (the documented sums): small
    /// enough for Miri.
    #[test]
    fn narrow_products_same_bits() {
        let mut rng = Rng::seed_from_u64(9);
        for beta in [0.0, 0.5] {
            let (ours, theirs) =
                both_kernels((20, 9, 3), (1.0, beta), (true, true, true), &mut rng);
            let same = ours
                .iter()
                .zip(&theirs)
                .all(|(x, y)| x.to_bits() == y.to_bits());
            assert!(same, "beta {beta}");
            #[cfg(target_arch = "x86_64")]
            if avx2::available() {
                let shape = (20, 300, 3);
                let layouts = (true, true, true);
                let (ours, (a, b, mut want)) = our_kernel(shape, (1.0, beta), layouts, &mut rng);
                documented_sums(shape, (1.0, beta), (&a, &b), &mut want);
                let same = ours
                    .iter()
                    .zip(&want)
                    .all(|(x, y)| x.to_bits() == y.to_bits());
                assert!(same, "{shape:?} beta {beta}");
            }
        }
    }

    #[test]
    fn scaled_products_agree_in_every_layout() {
        let mut rng = Rng::seed_from_u64(8);
        for &(m, k, n) in &[(19, 270, 11), (3, 5, 40), (64, 0, 6)] {
            for layout in 0..8 {
                let layouts = (layout & 1 == 0, layout & 2 == 0, layout & 4 == 0);
                let (ours, theirs) = both_kernels((m, k, n), (-1.5, 0.25), layouts, &mut rng);
                for (x, y) in ours.iter().zip(&theirs) {
                    assert!((x - y).abs() <= 1e-4 * (1.0 + y.abs()), "{x} vs {y}");
                }
            }
        }
    }

    #[test]
    fn vectors_and_batches() {
        let a = Tensor::arange(0.0, 6.0, 1.0)
            .unwrap()
            .reshape(&[2, 3])
            .unwrap();
        let v = Tensor::from_vec(vec![1.0, 1.0, 1.0], &[3]).unwrap();
        assert_eq!(a.matmul(&v).unwrap().to_vec(), vec![3.0, 12.0]);
        let w = Tensor::from_vec(vec![1.0, 1.0], &[2]).unwrap();
        assert_eq!(w.matmul(&a).unwrap().to_vec(), vec![3.0, 5.0, 7.0]);
        assert_eq!(v.matmul(&v).unwrap().shape(), &[] as &[usize]);
        let batch = Tensor::stack(&[&a, &a.mul_scalar(2.0)], 0).unwrap();
        let r = batch.matmul(&a.transpose().unwrap()).unwrap();
        assert_eq!(r.shape(), &[2, 2, 2]);
        assert_eq!(
            r.index_axis(0, 1).unwrap().to_vec(),
            vec![10.0, 28.0, 28.0, 100.0]
        );
        assert_eq!(batch.matmul(&v).unwrap().shape(), &[2, 2]);
        assert!(a.matmul(&a).is_err());
        assert!(Tensor::scalar(1.0).matmul(&a).is_err());
        let e = Tensor::zeros(&[2, 2, 3])
            .matmul(&Tensor::zeros(&[3, 3, 1]))
            .unwrap_err();
        assert!(e.to_string().contains("[2, 2, 3]") && e.to_string().contains("[3, 3, 1]"));
    }

    #[test]
    fn zero_sizes() {
        assert_eq!(
            Tensor::zeros(&[0, 3])
                .matmul(&Tensor::ones(&[3, 4]))
                .unwrap()
                .shape(),
            &[0, 4]
        );
        let z = Tensor::ones(&[2, 0])
            .matmul(&Tensor::ones(&[0, 4]))
            .unwrap();
        assert_eq!(z.to_vec(), vec![0.0; 8]);
    }

    #[test]
    fn gemm_accumulates_and_ignores_nan_with_zero_beta() {
        let a = Tensor::arange(0.0, 6.0, 1.0)
            .unwrap()
            .reshape(&[2, 3])
            .unwrap();
        let mut c = Tensor::full(&[3, 3], f32::NAN);
        gemm(1.0, &a.transpose().unwrap(), &a, 0.0, &mut c).unwrap();
        let want = naive(&a.transpose().unwrap(), &a);
        assert_eq!(c.to_vec(), want);
        let shared = c.clone();
        gemm(1.0, &a.transpose().unwrap(), &a, -1.0, &mut c).unwrap();
        assert_eq!(c.to_vec(), vec![0.0; 9]);
        assert_eq!(shared.to_vec(), want, "the clone must not see the write");
        assert!(gemm(1.0, &a, &a, 0.0, &mut c).is_err());
        let mut bad = Tensor::zeros(&[2, 2]);
        assert!(gemm(1.0, &a.transpose().unwrap(), &a, 0.0, &mut bad).is_err());
    }
}
