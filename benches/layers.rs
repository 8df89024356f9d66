//! Forward + backward throughput (samples/s) of the layers at the shapes of the Keras MNIST
//! examples, batch 128: Dense 784 -> 128 (relu), Conv2D 28x28x1 -> 32 filters 3x3 (relu),
//! MaxPooling2D 2x2 of that conv's output, LSTM 28 steps 28 -> 64.
//!
//! One iteration: forward on a tape, then the gradients of `sum(y)` (the tape seeds the
//! non-scalar output with ones) with respect to the input and every weight. `conv2d_first_layer` skips the input gradient (a first layer does not need it).
//! The same work in PyTorch on one thread: `benches/peers/layers_torch.py`.
//!
//! Times are the CPU time of the benchmarking thread (`CLOCK_THREAD_CPUTIME_ID`), not wall
//! time: the machine is shared by concurrent builds, and CPU time is what stays comparable with
//! the peer, which reports its thread's CPU time too (`time.thread_time`). Set `WALL=1` for
//! wall-clock times. The kernels run on one thread here (as the peer), since another thread's
//! CPU time would not be counted.
//!
//! Run: `flock /tmp/gradus-bench.lock cargo bench --bench layers`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use gradus::autograd::{Tape, Variable};
use gradus::layers::{Conv2D, Dense, LSTM, Layer, LayerExt, MaxPooling2D};
use gradus::tensor::{Rng, Tensor};

const BATCH: usize = 128;

/// One forward + backward step of `layer` on `x`, with the input gradient when `wrt_input`.
fn step(layer: &dyn Layer, x: &Variable, wrt_input: bool) -> Vec<Tensor> {
    let tape = Tape::new();
    let input = if wrt_input {
        tape.watch(x)
    } else {
        tape.constant(x.value())
    };
    let y = layer.call(&input, true).unwrap();
    let mut vars = layer.trainable_variables();
    if wrt_input {
        vars.push(x.clone());
    }
    tape.gradient(&y, &vars.iter().collect::<Vec<_>>()).unwrap()
}

/// The CPU time consumed so far by the calling thread.
fn thread_cpu_time() -> Duration {
    #[repr(C)]
    struct Timespec {
        tv_sec: i64,
        tv_nsec: i64,
    }
    unsafe extern "C" {
        fn clock_gettime(clock: i32, tp: *mut Timespec) -> i32;
    }
    const CLOCK_THREAD_CPUTIME_ID: i32 = 3;
    let mut t = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid, writable timespec; the clock id is Linux's thread CPU clock.
    let rc = unsafe { clock_gettime(CLOCK_THREAD_CPUTIME_ID, &mut t) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// Runs `f` `iters` times and returns the elapsed CPU time (wall time with `WALL=1`).
fn timed(iters: u64, mut f: impl FnMut()) -> Duration {
    if std::env::var_os("WALL").is_some() {
        let start = Instant::now();
        (0..iters).for_each(|_| f());
        return start.elapsed();
    }
    let start = thread_cpu_time();
    (0..iters).for_each(|_| f());
    thread_cpu_time() - start
}

fn bench_layer(c: &mut Criterion, name: &str, layer: &dyn Layer, shape: &[usize], wrt_input: bool) {
    let mut rng = Rng::seed_from_u64(1);
    let x = Variable::new("x", Tensor::rand_uniform(shape, 0.0, 1.0, &mut rng));
    let mut group = c.benchmark_group("layers");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function(name, |b| {
        b.iter_custom(|iters| {
            timed(iters, || {
                black_box(step(layer, &x, wrt_input));
            })
        })
    });
    group.finish();
}

fn layers(c: &mut Criterion) {
    gradus_tensor::parallel::set_num_threads(1);
    let dense = Dense::new(128).activation("relu").built(&[784], 0).unwrap();
    bench_layer(c, "dense_784_128", &dense, &[BATCH, 784], true);

    let conv = Conv2D::new(32, 3)
        .activation("relu")
        .built(&[28, 28, 1], 0)
        .unwrap();
    bench_layer(c, "conv2d_28x28x1_32x3x3", &conv, &[BATCH, 28, 28, 1], true);
    bench_layer(c, "conv2d_first_layer", &conv, &[BATCH, 28, 28, 1], false);

    let pool = MaxPooling2D::new(2).built(&[26, 26, 32], 0).unwrap();
    bench_layer(c, "maxpool2d_26x26x32", &pool, &[BATCH, 26, 26, 32], true);

    let lstm = LSTM::new(64).built(&[28, 28], 0).unwrap();
    bench_layer(c, "lstm_28x28_64", &lstm, &[BATCH, 28, 28], true);
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(30)
        .warm_up_time(std::time::Duration::from_secs(1))
        .measurement_time(std::time::Duration::from_secs(4));
    targets = layers
}
criterion_main!(benches);
