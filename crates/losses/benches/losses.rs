//! Forward + backward of the fused losses against the same formulas composed from
//! gradus-autograd operations (what a loss written with `Var` ops would cost), at the shapes of
//! a classifier's output: batch 128, 10 classes (MNIST) and 1000 classes. Throughput in samples.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use gradus_autograd::{Tape, Var};
use gradus_losses::{CategoricalCrossentropy, EPSILON, Loss, SparseCategoricalCrossentropy};
use gradus_tensor::{Rng, Tensor};

fn one_hot(ids: &[usize], classes: usize) -> Tensor {
    Tensor::one_hot(ids, classes).unwrap()
}

/// The fused loss: value and gradient with respect to the predictions.
fn fused(loss: &dyn Loss, y: &Tensor, x: &Tensor) -> Tensor {
    let tape = Tape::new();
    let p = tape.watch_tensor(x.clone());
    let l = loss.call(y, &p).unwrap();
    tape.gradient_wrt(&l, &[&p]).unwrap()[0].clone().unwrap()
}

/// The same loss written with `Var` operations.
fn composed(f: impl for<'t> Fn(&Tensor, &Var<'t>) -> Var<'t>, y: &Tensor, x: &Tensor) -> Tensor {
    let tape = Tape::new();
    let p = tape.watch_tensor(x.clone());
    let l = f(y, &p);
    tape.gradient_wrt(&l, &[&p]).unwrap()[0].clone().unwrap()
}

fn bench(c: &mut Criterion) {
    let mut rng = Rng::seed_from_u64(0);
    let batch = 128;
    let mut group = c.benchmark_group("loss_fwd_bwd");
    group.throughput(Throughput::Elements(batch as u64));
    for classes in [10, 1000] {
        let logits = Tensor::rand_normal(&[batch, classes], 0.0, 2.0, &mut rng);
        let probs = logits.softmax(-1).unwrap();
        let ids: Vec<usize> = (0..batch).map(|i| (i * 7) % classes).collect();
        let labels = Tensor::from_vec(ids.iter().map(|&k| k as f32).collect(), &[batch]).unwrap();
        let onehot = one_hot(&ids, classes);

        let scce = SparseCategoricalCrossentropy::new().from_logits(true);
        group.bench_with_input(
            BenchmarkId::new("scce_logits_fused", classes),
            &(),
            |b, _| b.iter(|| fused(&scce, &labels, &logits)),
        );
        group.bench_with_input(
            BenchmarkId::new("scce_logits_composed", classes),
            &(),
            |b, _| {
                b.iter(|| {
                    composed(
                        |_, p| {
                            let lp = p.log_softmax(-1).unwrap();
                            let y = p.lift(onehot.clone());
                            y.mul(&lp)
                                .unwrap()
                                .sum_axis(-1, false)
                                .unwrap()
                                .neg()
                                .mean_all()
                        },
                        &labels,
                        &logits,
                    )
                })
            },
        );
        let cce = CategoricalCrossentropy::new();
        group.bench_with_input(BenchmarkId::new("cce_probs_fused", classes), &(), |b, _| {
            b.iter(|| fused(&cce, &onehot, &probs))
        });
        group.bench_with_input(
            BenchmarkId::new("cce_probs_composed", classes),
            &(),
            |b, _| {
                b.iter(|| {
                    composed(
                        |y, p| {
                            let q = p.div(&p.sum_axis(-1, true).unwrap()).unwrap();
                            let lq = q.clip(EPSILON, 1.0 - EPSILON).ln();
                            let y = p.lift(y.clone());
                            y.mul(&lq)
                                .unwrap()
                                .sum_axis(-1, false)
                                .unwrap()
                                .neg()
                                .mean_all()
                        },
                        &onehot,
                        &probs,
                    )
                })
            },
        );
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).warm_up_time(std::time::Duration::from_millis(500)).measurement_time(std::time::Duration::from_secs(2));
    targets = bench
}
criterion_main!(benches);
