//! `summary()`: Keras' table of layers, output shapes and parameter counts.

use gradus_autograd::Variable;
use gradus_optim::Optimizer;

use crate::model::Model;
use crate::network::Network;

/// Whether the optimizer is built (Keras' `optimizer.built`): it has made a step, or holds
/// state for some parameter (restored from a checkpoint, or a step under gradient
/// accumulation).
fn optimizer_built(optimizer: &Optimizer) -> bool {
    optimizer.iterations() > 0 || optimizer.is_built()
}

/// Column widths of the table (Keras' defaults for a line of 76 characters).
const WIDTHS: [usize; 3] = [31, 22, 13];

/// A byte count as Keras prints it: `60.00 B`, `1.50 KB`, `2.25 MB`.
fn readable_size(bytes: usize) -> String {
    let mut size = bytes as f64;
    for unit in ["B", "KB", "MB", "GB"] {
        if size < 1024.0 || unit == "GB" {
            return format!("{size:.2} {unit}");
        }
        size /= 1024.0;
    }
    unreachable!("the loop returns at GB")
}

/// `n (size)`, the count of `f32` parameters and their bytes (`extra` bytes added).
fn count(n: usize, extra: usize) -> String {
    format!("{n} ({})", readable_size(4 * n + extra))
}

fn row(cells: [&str; 3], left: &str, sep: &str, right: &str) -> String {
    format!(
        "{left} {:<w0$} {sep} {:<w1$} {sep} {:>w2$} {right}\n",
        cells[0],
        cells[1],
        cells[2],
        w0 = WIDTHS[0],
        w1 = WIDTHS[1],
        w2 = WIDTHS[2]
    )
}

fn rule(left: &str, fill: &str, sep: &str, right: &str) -> String {
    let parts: Vec<String> = WIDTHS.iter().map(|w| fill.repeat(w + 2)).collect();
    format!("{left}{}{right}\n", parts.join(sep))
}

impl<N: Network> Model<N> {
    /// Keras' model summary as text: the title, one row per layer (name and type, output shape
    /// with `None` for the batch axis, or `?` before the model is built, and parameter count),
    /// then the total, trainable, non-trainable and optimizer parameter counts with their
    /// sizes.
    ///
    /// As Keras, the optimizer's line (and its share of the total) appears once the optimizer
    /// is built: after its first step, or after loading a checkpoint that holds its state;
    /// compiling alone shows none. Its count is every scalar of its variables (the `iteration`,
    /// an `int64`, and the learning rate included): 2 for plain SGD once built.
    pub fn summary_string(&self) -> String {
        let mut s = format!("Model: \"{}\"\n", self.network().name());
        s += &rule("┏", "━", "┳", "┓");
        s += &row(["Layer (type)", "Output Shape", "Param #"], "┃", "┃", "┃");
        s += &rule("┡", "━", "╇", "┩");
        let rows = self.layer_rows();
        for (i, (name, class, shape, params)) in rows.iter().enumerate() {
            let label = format!("{name} ({class})");
            s += &row([&label, shape, &params.to_string()], "│", "│", "│");
            if i + 1 < rows.len() {
                s += &rule("├", "─", "┼", "┤");
            }
        }
        s += &rule("└", "─", "┴", "┘");
        let vars = self.variables();
        let trainable: usize = vars
            .iter()
            .filter(|v| v.trainable())
            .map(Variable::len)
            .sum();
        let total: usize = vars.iter().map(Variable::len).sum();
        let optimizer = self
            .optimizer()
            .filter(|o| optimizer_built(o))
            .map(Optimizer::count_params);
        // The iteration counter is an int64: 4 more bytes than an f32.
        let opt_extra = usize::from(optimizer.is_some()) * 4;
        let all = total + optimizer.unwrap_or(0);
        s += &format!(" Total params: {}\n", count(all, opt_extra));
        s += &format!(" Trainable params: {}\n", count(trainable, 0));
        s += &format!(" Non-trainable params: {}\n", count(total - trainable, 0));
        if let Some(n) = optimizer {
            s += &format!(" Optimizer params: {}\n", count(n, opt_extra));
        }
        s
    }

    /// Prints [`summary_string`](Model::summary_string) to stdout and returns it.
    pub fn summary(&self) -> String {
        let s = self.summary_string();
        print!("{s}");
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_readable() {
        assert_eq!(readable_size(60), "60.00 B");
        assert_eq!(readable_size(1536), "1.50 KB");
        assert_eq!(readable_size(3 * 1024 * 1024), "3.00 MB");
    }
}
