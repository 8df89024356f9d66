//! The seam between an optimizer step and a thread pool.
//!
//! An element-wise rule (SGD, RMSprop, Adam, AdamW, Adadelta, Adagrad, Adamax, Nadam, Ftrl, Lion)
//! updates each element of a parameter from that element's gradient and slots alone, so a large
//! parameter can be cut into contiguous pieces updated at the same time. The optimizer decides
//! the pieces; a [`Parallel`] runs them. gradus-optim brings no thread pool of its own: it
//! offers [`Serial`] (the default of [`Optimizer::apply_gradients`]) and [`ScopedThreads`]
//! (plain `std` threads), and any pool plugs in through the trait's two methods.
//!
//! Every element goes through the same operations whichever piece it falls in, so a step gives
//! the same bits with any [`Parallel`] and any thread count.
//!
//! [`Optimizer::apply_gradients`]: crate::Optimizer::apply_gradients

use std::num::NonZeroUsize;

/// Runs the independent pieces of an optimizer step, possibly at the same time.
///
/// ```
/// use gradus_optim::{NamedParam, Optimizer, Parallel};
///
/// /// A pool of the user's own (here: everything on the calling thread, in reverse).
/// struct Backwards;
///
/// impl Parallel for Backwards {
///     fn threads(&self) -> usize { 4 }
///     fn run(&self, pieces: usize, piece: &(dyn Fn(usize) + Sync)) {
///         (0..pieces).rev().for_each(piece);
///     }
/// }
///
/// let g: Vec<f32> = (0..100_000).map(|i| (i as f32).sin()).collect();
/// let (mut w, mut w_serial) = (vec![1.0_f32; 100_000], vec![1.0_f32; 100_000]);
/// let (mut opt, mut serial) = (Optimizer::from_name("adam")?, Optimizer::from_name("adam")?);
/// opt.apply_gradients_with(&Backwards, [(&g, NamedParam::new("w", &mut w))])?;
/// serial.apply_gradients([(&g, NamedParam::new("w", &mut w_serial))])?;
/// assert_eq!(w, w_serial); // bit for bit
/// # Ok::<(), gradus_optim::OptimError>(())
/// ```
pub trait Parallel: Sync {
    /// How many pieces are worth running at once (1: no split).
    fn threads(&self) -> usize;

    /// Calls `piece(i)` exactly once for each `i in 0..pieces`, in any order and possibly on
    /// several threads at the same time, and returns once every call has returned. A panic in
    /// a piece should reach the caller.
    fn run(&self, pieces: usize, piece: &(dyn Fn(usize) + Sync));
}

/// Every piece on the calling thread, in order.
#[derive(Debug, Clone, Copy, Default)]
pub struct Serial;

impl Parallel for Serial {
    fn threads(&self) -> usize {
        1
    }

    fn run(&self, pieces: usize, piece: &(dyn Fn(usize) + Sync)) {
        (0..pieces).for_each(piece);
    }
}

/// Up to `n` threads: the calling thread and `n - 1` scoped `std` threads started for each
/// split parameter. Starting a thread costs tens of microseconds, so this pays off for
/// parameters of millions of values; a long-lived pool (as gradus' own, which
/// `gradus_autograd::apply_gradients` uses) also pays off for smaller ones.
#[derive(Debug, Clone, Copy)]
pub struct ScopedThreads(pub NonZeroUsize);

impl ScopedThreads {
    /// As many threads as the machine offers (`std::thread::available_parallelism`, 1 when
    /// unknown).
    pub fn available() -> ScopedThreads {
        ScopedThreads(std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN))
    }
}

impl Parallel for ScopedThreads {
    fn threads(&self) -> usize {
        self.0.get()
    }

    fn run(&self, pieces: usize, piece: &(dyn Fn(usize) + Sync)) {
        let threads = self.0.get().min(pieces);
        if threads <= 1 {
            (0..pieces).for_each(piece);
            return;
        }
        // Thread `t` takes pieces t, t + threads, ...; the calling thread is thread 0.
        let strided = |t: usize| (t..pieces).step_by(threads).for_each(piece);
        std::thread::scope(|s| {
            for t in 1..threads {
                s.spawn(move || strided(t));
            }
            strided(0);
        });
    }
}
