//! `Sequential` runs `Conv2D` then `MaxPooling2D` as one fused operation when the input needs
//! no gradient: the same outputs and the same gradients, bit for bit, as calling the layers one
//! after the other.

use gradus_autograd::{Tape, Var};
use gradus_layers::{Conv2D, Dense, Flatten, MaxPooling2D};
use gradus_models::{Network, Sequential};
use gradus_tensor::{Rng, Tensor};

#[test]
fn conv_then_max_pool_fused_equals_the_layers_one_by_one() {
    for act in ["relu", "tanh", "linear"] {
        let mut net = Sequential::new()
            .layer(Conv2D::new(8, 3).activation(act))
            .layer(MaxPooling2D::new(2))
            .layer(Flatten::new())
            .layer(Dense::new(3));
        net.build(&[10, 12, 1], &mut Rng::seed_from_u64(3)).unwrap();
        let x = Tensor::rand_uniform(&[5, 10, 12, 1], -1.0, 1.0, &mut Rng::seed_from_u64(4));
        let vars: Vec<_> = net.layers().iter().flat_map(|l| l.variables()).collect();
        let run = |fused: bool| {
            let tape = Tape::new();
            let input = tape.constant(x.clone());
            let y = if fused {
                net.call(&input, true).unwrap()
            } else {
                let mut out: Var<'_> = input;
                for layer in net.layers() {
                    out = layer.call(&out, true).unwrap();
                }
                out
            };
            let recorded = tape.len();
            let loss = y.mul(&y).unwrap().sum_all();
            let grads = tape
                .gradient(&loss, &vars.iter().collect::<Vec<_>>())
                .unwrap();
            let mut all = vec![y.value().to_vec()];
            all.extend(grads.iter().map(Tensor::to_vec));
            (all, recorded)
        };
        let ((fused, fused_ops), (separate, separate_ops)) = (run(true), run(false));
        // One operation fewer on the tape: the pair was fused.
        assert_eq!(fused_ops + 1, separate_ops, "{act}");
        assert_eq!(fused, separate, "{act}");
        assert!(
            fused[1].iter().any(|&g| g != 0.0),
            "{act}: the kernel gradient is not empty"
        );
    }
}
