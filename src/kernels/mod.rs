//! GPU kernels: one `<op>.wgsl` next to one `<op>.rs` per op family.
//!
//! Each wrapper checks the shapes and dtypes of its tensors (returning a typed
//! [`Error`](crate::Error) before anything is dispatched), builds the pipeline key for the
//! variant it needs, and records one dispatch into an [`Encoder`](crate::gpu::Encoder).
//! The kernel table with bindings, shapes, dispatch and tolerances is `SPEC/kernels.md`.

pub mod activation;
pub mod attention;
pub mod embed;
pub mod matmul;
pub mod norm;
pub mod pool;
pub mod quant;
pub mod quantize;
pub mod rope;
pub mod sample;
pub mod search;
pub mod speculative;

/// Every value that changes a compiled pipeline: the op family, the entry point and the
/// preprocessor defines. It is the pipeline cache's key and, formatted, the wgpu label.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum KernelKey {
    Embed(embed::EmbedKey),
    Norm(norm::NormKey),
    Matmul(matmul::MatmulKey),
    Activation(activation::ActivationKey),
    Attention(attention::AttentionKey),
    Pool(pool::PoolKey),
    Search(search::SearchKey),
    Quant(quant::QuantKey),
    Quantize(quantize::QuantizeKey),
    Rope(rope::RopeKey),
    Sample(sample::SampleKey),
    Speculative(speculative::SpeculativeKey),
}

/// A kernel variant of one op family.
pub(crate) trait Variant {
    const FAMILY: &'static str;
    const SOURCE: &'static str;
    fn entry(&self) -> &'static str;
    fn defines(&self) -> Vec<&'static str> {
        Vec::new()
    }
    fn needs_shader_f16(&self) -> bool {
        false
    }
    /// Values of WGSL `override` constants.
    fn constants(&self) -> Vec<(&'static str, f64)> {
        Vec::new()
    }
}

macro_rules! dispatch_variant {
    ($self:ident, $k:ident => $e:expr) => {
        match $self {
            KernelKey::Embed($k) => $e,
            KernelKey::Norm($k) => $e,
            KernelKey::Matmul($k) => $e,
            KernelKey::Activation($k) => $e,
            KernelKey::Attention($k) => $e,
            KernelKey::Pool($k) => $e,
            KernelKey::Search($k) => $e,
            KernelKey::Quant($k) => $e,
            KernelKey::Quantize($k) => $e,
            KernelKey::Rope($k) => $e,
            KernelKey::Sample($k) => $e,
            KernelKey::Speculative($k) => $e,
        }
    };
}

impl KernelKey {
    pub fn family(&self) -> &'static str {
        fn fam<V: Variant>(_: &V) -> &'static str {
            V::FAMILY
        }
        dispatch_variant!(self, k => fam(k))
    }
    pub(crate) fn source(&self) -> &'static str {
        fn src<V: Variant>(_: &V) -> &'static str {
            V::SOURCE
        }
        dispatch_variant!(self, k => src(k))
    }
    pub(crate) fn entry(&self) -> &'static str {
        dispatch_variant!(self, k => k.entry())
    }
    pub(crate) fn defines(&self) -> Vec<&'static str> {
        dispatch_variant!(self, k => k.defines())
    }
    pub(crate) fn needs_shader_f16(&self) -> bool {
        dispatch_variant!(self, k => k.needs_shader_f16())
    }
    pub(crate) fn constants(&self) -> Vec<(&'static str, f64)> {
        dispatch_variant!(self, k => k.constants())
    }
}

/// The tiny WGSL preprocessor: `#ifdef NAME`, `#ifndef NAME`, `#else`, `#endif` (nestable),
/// evaluated against `defines`. Everything else passes through unchanged, so the shader
/// that runs is the file a person reads with some blocks left out.
pub fn preprocess(source: &str, defines: &[&str]) -> String {
    let mut out = String::with_capacity(source.len());
    // Stack of (this block active, parent active).
    let mut stack: Vec<(bool, bool)> = Vec::new();
    let active = |stack: &Vec<(bool, bool)>| stack.last().map_or(true, |&(a, p)| a && p);
    for line in source.lines() {
        let t = line.trim_start();
        if let Some(name) = t.strip_prefix("#ifdef ") {
            let parent = active(&stack);
            stack.push((defines.contains(&name.trim()), parent));
        } else if let Some(name) = t.strip_prefix("#ifndef ") {
            let parent = active(&stack);
            stack.push((!defines.contains(&name.trim()), parent));
        } else if t.starts_with("#else") {
            if let Some(top) = stack.last_mut() {
                top.0 = !top.0;
            }
        } else if t.starts_with("#endif") {
            stack.pop();
        } else if active(&stack) {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// Packs f32 parameters for a uniform block as u32 bits.
pub(crate) fn f(v: f32) -> u32 {
    v.to_bits()
}

/// Converts a size to u32 for a uniform, with a typed error when it does not fit.
pub(crate) fn u(op: &'static str, what: &str, v: usize) -> crate::Result<u32> {
    u32::try_from(v).map_err(|_| crate::Error::param(op, format!("{what} = {v} does not fit in u32")))
}

#[cfg(test)]
mod tests {
    use super::preprocess;

    #[test]
    fn preprocess_selects_blocks() {
        let src = "a\n#ifdef X\nb\n#ifndef Y\nc\n#else\nd\n#endif\n#else\ne\n#endif\nf\n";
        assert_eq!(preprocess(src, &["X"]), "a\nb\nc\nf\n");
        assert_eq!(preprocess(src, &["X", "Y"]), "a\nb\nd\nf\n");
        assert_eq!(preprocess(src, &[]), "a\ne\nf\n");
    }
}
