//! The tape's own cost: recording + backward per operation on tiny tensors (where only the
//! overhead shows), and a 784-128-10 MLP training step at batch 128 next to the matmuls it
//! performs.
//!
//! Run: `flock /tmp/gradus-bench.lock cargo bench --bench autograd`.
//! Targets (issue 4): under 1 us per recorded op, and the MLP step within 1.3x of its matmuls.
//!
//! Every benchmark runs twice: `wall/...` measures wall-clock time as usual, and `cpu/...` the
//! time the benchmarking thread spent on a CPU (`CLOCK_THREAD_CPUTIME_ID` on Linux), which leaves
//! out the time it waited for a core while other processes ran: on a shared, loaded machine the
//! second is the meaningful one. Off Linux both are wall time.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use gradus::autograd::{Tape, Var, Variable};
use gradus::tensor::{Rng, Tensor};

/// Nanoseconds this thread has spent on a CPU (`clock_gettime(CLOCK_THREAD_CPUTIME_ID)`).
#[cfg(target_os = "linux")]
fn thread_cpu_ns() -> Option<u64> {
    #[repr(C)]
    struct Timespec {
        tv_sec: i64,
        tv_nsec: i64,
    }
    unsafe extern "C" {
        fn clock_gettime(clock: i32, tp: *mut Timespec) -> i32;
    }
    const CLOCK_THREAD_CPUTIME_ID: i32 = 3;
    let mut ts = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec (two 64-bit fields on 64-bit Linux).
    let rc = unsafe { clock_gettime(CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    (rc == 0).then(|| ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64)
}

/// Wall time is the fallback elsewhere.
#[cfg(not(target_os = "linux"))]
fn thread_cpu_ns() -> Option<u64> {
    None
}

/// Runs `f` `iters` times and returns the on-CPU time (or the wall time as a fallback).
fn cpu_time<R>(iters: u64, mut f: impl FnMut() -> R) -> Duration {
    let (c0, t0) = (thread_cpu_ns(), Instant::now());
    for _ in 0..iters {
        black_box(f());
    }
    match (c0, thread_cpu_ns()) {
        (Some(a), Some(b)) => Duration::from_nanos(b - a),
        _ => t0.elapsed(),
    }
}

/// Benchmarks `f` as `wall/{name}` and `cpu/{name}` (see the module docs).
fn both<R>(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    mut f: impl FnMut() -> R,
) {
    group.bench_function(format!("wall/{name}"), |b| b.iter(|| black_box(f())));
    group.bench_function(format!("cpu/{name}"), |b| {
        b.iter_custom(|n| cpu_time(n, &mut f))
    });
}

/// Operations per chain.
const CHAIN: usize = 100;

/// `CHAIN` ops cycling add, mul, tanh (`y = tanh((y + a) * b)`).
fn chain<'t>(x: &Var<'t>, a: &Var<'t>, b: &Var<'t>) -> Var<'t> {
    let mut y = x.clone();
    for i in 0..CHAIN {
        y = match i % 3 {
            0 => y.add(a).unwrap(),
            1 => y.mul(b).unwrap(),
            _ => y.tanh(),
        };
    }
    y
}

fn op_chain(c: &mut Criterion) {
    let mut group = c.benchmark_group("op_chain");
    group.throughput(Throughput::Elements(CHAIN as u64));
    for shape in [&[][..], &[4, 4][..]] {
        let label = if shape.is_empty() { "scalar" } else { "4x4" };
        let mut rng = Rng::seed_from_u64(0);
        let x = Variable::new("x", Tensor::rand_uniform(shape, -1.0, 1.0, &mut rng));
        let a = Variable::new("a", Tensor::rand_uniform(shape, -1.0, 1.0, &mut rng));
        let b = Variable::new("b", Tensor::rand_uniform(shape, 0.5, 1.0, &mut rng));
        both(&mut group, &format!("{label}/untracked_forward"), || {
            let (x, a, b) = (
                Var::constant(x.value()),
                Var::constant(a.value()),
                Var::constant(b.value()),
            );
            chain(&x, &a, &b).into_value()
        });
        both(&mut group, &format!("{label}/record_and_backward"), || {
            let tape = Tape::new();
            let y = chain(&tape.watch(&x), &tape.watch(&a), &tape.watch(&b)).sum_all();
            tape.gradient(&y, &[&x, &a, &b]).unwrap()
        });
    }
    group.finish();
}

struct Mlp {
    w1: Variable,
    b1: Variable,
    w2: Variable,
    b2: Variable,
    x: Tensor,
    y: Tensor,
}

impl Mlp {
    fn new() -> Mlp {
        let mut rng = Rng::seed_from_u64(1);
        let (batch, d, h, k) = (128, 784, 128, 10);
        Mlp {
            w1: Variable::new("w1", Tensor::rand_normal(&[d, h], 0.0, 0.05, &mut rng)),
            b1: Variable::new("b1", Tensor::zeros(&[h])),
            w2: Variable::new("w2", Tensor::rand_normal(&[h, k], 0.0, 0.1, &mut rng)),
            b2: Variable::new("b2", Tensor::zeros(&[k])),
            x: Tensor::rand_uniform(&[batch, d], 0.0, 1.0, &mut rng),
            y: Tensor::from_vec((0..batch).map(|i| (i % k) as f32).collect(), &[batch]).unwrap(),
        }
    }

    fn step(&self) -> Vec<Tensor> {
        let tape = Tape::new();
        let x = tape.constant(self.x.clone());
        let h = x
            .matmul(&x.param(&self.w1))
            .unwrap()
            .add(&x.param(&self.b1))
            .unwrap()
            .relu();
        let z = h
            .matmul(&h.param(&self.w2))
            .unwrap()
            .add(&h.param(&self.b2))
            .unwrap();
        let loss = z.sparse_softmax_cross_entropy(&self.y).unwrap();
        tape.gradient(&loss, &[&self.w1, &self.b1, &self.w2, &self.b2])
            .unwrap()
    }
}

fn mlp(c: &mut Criterion) {
    let m = Mlp::new();
    let mut group = c.benchmark_group("mlp_784_128_10_batch128");
    group.sample_size(50);
    both(&mut group, "forward_backward", || m.step());
    // The five products of the step, with the operands it uses (transposes are strided views):
    // x W1, h W2 forward; h^T dz, dz W2^T, x^T dh backward (no product for the input's gradient).
    let (x, w1, w2) = (m.x.clone(), m.w1.value(), m.w2.value());
    let h = x.matmul(&w1).unwrap();
    let dz = h.matmul(&w2).unwrap();
    both(&mut group, "matmuls_only", || {
        black_box(x.matmul(&w1).unwrap());
        black_box(h.matmul(&w2).unwrap());
        black_box(h.transpose().unwrap().matmul(&dz).unwrap());
        black_box(dz.matmul(&w2.transpose().unwrap()).unwrap());
        x.transpose().unwrap().matmul(&h).unwrap()
    });
    group.finish();
}

criterion_group!(benches, op_chain, mlp);
criterion_main!(benches);
