//! One file per architecture family, written the way HF's modeling files read.

pub mod bert;
pub mod llama;
pub mod gemma3;
