//! Plain CPU versions of every kernel, with the same names as `src/kernels/`. Tests and
//! benches compare the GPU against these. They favour clarity over speed and accumulate
//! in f64 where a reduction is involved.

pub mod activation;
pub mod attention;
pub mod check;
pub mod embed;
pub mod llama;
pub mod matmul;
pub mod norm;
pub mod pool;
pub mod rng;
pub mod rope;
pub mod sample;
pub mod search;
pub mod speculative;

pub use activation::{add, geglu_tanh, gelu, silu, tanh};
pub use attention::attention;
pub use embed::embedding;
pub use matmul::linear;
pub use norm::{l2_normalize, layer_norm, rms_norm};
pub use pool::{cls_pool, last_pool, mean_pool};
pub use rope::{kv_shift, rope};
