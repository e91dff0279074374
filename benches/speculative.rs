//! Speculative decoding (prompt lookup) on a real model: greedy tokens/s with and without
//! it and the acceptance rate, on prompts where drafts should pay (continuing a code file the
//! prompt holds; a summary that quotes its source) and on one where they never match (random
//! token ids). Drafting needs a model's real predictions, so this bench takes a real
//! checkpoint, not random weights: `cargo bench --bench speculative -- MODEL` (a folder or a
//! `.gguf` file; `GLLM_SPEC_NEW` new tokens, default 64; `GLLM_SPEC_K` drafts per pass,
//! default 8). Each figure is the median of 3 calls (after a warm-up), prefill included, with
//! the prefix cache off; the output of both modes is checked equal.

use std::time::Instant;

mod common;

use common::median;
use gllm_web::loader::FileSource;
use gllm_web::reference::rng::Rng;
use gllm_web::{GenerateOptions, Generator, GeneratorOptions, Gpu, LoadOptions, Prompt, Speculative};

const CODE: &str = "import math\n\nclass Vector:\n    def __init__(self, x, y):\n        self.x = x\n        self.y = y\n\n    def norm(self):\n        return math.sqrt(self.x * self.x + self.y * self.y)\n\n    def scale(self, k):\n        return Vector(self.x * k, self.y * k)\n\n    def add(self, other):\n        return Vector(self.x + other.x, self.y + other.y)\n\n# The same file again, with comments:\n\nimport math\n\nclass Vector:\n    def __init__(self, x, y):\n";
const SUMMARY: &str = "Source: The Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars in Paris, France. It is named after the engineer Gustave Eiffel, whose company designed and built the tower from 1887 to 1889. It was the entrance arch to the 1889 World's Fair.\n\nSummary quoting the source: The Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars in Paris,";

fn main() -> gllm_web::Result<()> {
    let model = std::env::args().skip(1).find(|a| !a.starts_with("--")).unwrap_or_else(|| "models/gguf/SmolLM2-135M-Instruct.Q4_1.gguf".into());
    let new: usize = std::env::var("GLLM_SPEC_NEW").ok().and_then(|v| v.parse().ok()).unwrap_or(64);
    let k: usize = std::env::var("GLLM_SPEC_K").ok().and_then(|v| v.parse().ok()).unwrap_or(8);
    pollster::block_on(async {
        let gpu = Gpu::new().await?;
        let (src, weights) = FileSource::open_model(&model)?;
        let mut g = Generator::load(&gpu, &src, GeneratorOptions { load: LoadOptions { weights, ..Default::default() }, kv_dtype: None }, &|_| {}).await?;
        let mut rng = Rng::new(5);
        let vocab = g.vocab_size() as u32;
        let random: Vec<u32> = (0..200).map(|_| rng.below(vocab)).collect();
        println!("| prompt | greedy tok/s | speculative tok/s | speedup | drafts accepted | verify + plain steps |");
        println!("|---|---|---|---|---|---|");
        for (name, prompt) in [("code file", Prompt::Text(CODE)), ("summary quoting its source", Prompt::Text(SUMMARY)), ("random ids (no match)", Prompt::Ids(&random))] {
            let plain = GenerateOptions { max_new_tokens: new, ignore_eos: true, prefix_cache: false, ..Default::default() };
            let spec = GenerateOptions { speculative: Some(Speculative { k, ..Default::default() }), ..plain.clone() };
            let mut times = [Vec::new(), Vec::new()];
            let mut last = [None, None];
            for rep in 0..4 {
                for (i, o) in [&plain, &spec].into_iter().enumerate() {
                    let t0 = Instant::now();
                    let out = g.generate(prompt, o).await?;
                    if rep > 0 {
                        times[i].push(t0.elapsed().as_secs_f64());
                    }
                    last[i] = Some(out);
                }
            }
            let (p, s) = (last[0].take().expect("ran"), last[1].take().expect("ran"));
            if p.tokens != s.tokens {
                return Err(gllm_web::Error::Input(format!("{name}: speculative output differs from greedy")));
            }
            let st = s.speculative.unwrap_or_default();
            let (tp, ts) = (median(times[0].clone()), median(times[1].clone()));
            let n = p.tokens.len() as f64;
            println!(
                "| {name} | {:.1} | {:.1} | {:.2}× | {}/{} ({:.0} %) | {} + {} |",
                n / tp,
                n / ts,
                tp / ts,
                st.accepted,
                st.drafted,
                100.0 * st.accepted as f64 / st.drafted.max(1) as f64,
                st.verify_steps,
                st.plain_steps
            );
        }
        println!("\n{} on {}, {new} new tokens, k = {k}", model, gpu.caps().adapter);
        Ok(())
    })
}
