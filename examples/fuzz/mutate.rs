#![allow(dead_code)]
//! Seeded byte mutations shared by the mutation fuzzers (`examples/fuzz_gguf.rs`,
//! `examples/fuzz_inputs.rs`): bit flips, interesting integers over u32/u64 fields,
//! truncation, insertion, deletion, duplication, length fields aimed at the input's size,
//! and (for text formats) splices of a dictionary of tokens.

pub struct Rng(pub u64);
impl Rng {
    pub fn next(&mut self) -> u64 {
        // splitmix64
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

const INTERESTING: [u64; 12] = [
    0,
    1,
    2,
    3,
    4,
    31,
    32,
    255,
    0x7fff_ffff,
    0xffff_ffff,
    1 << 40,
    u64::MAX,
];

pub fn mutate(rng: &mut Rng, d: &mut Vec<u8>) {
    for _ in 0..1 + rng.below(6) {
        let len = d.len();
        match rng.below(9) {
            0 if len > 0 => {
                let i = rng.below(len);
                d[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                d[i] = rng.next() as u8;
            }
            2 if len >= 4 => {
                let i = rng.below(len - 3);
                let v = INTERESTING[rng.below(INTERESTING.len())] as u32;
                d[i..i + 4].copy_from_slice(&v.to_le_bytes());
            }
            3 if len >= 8 => {
                let i = rng.below(len - 7);
                let v = INTERESTING[rng.below(INTERESTING.len())].wrapping_add(rng.below(3) as u64);
                d[i..i + 8].copy_from_slice(&v.to_le_bytes());
            }
            4 => d.truncate(rng.below(len + 1)),
            5 => {
                let i = rng.below(len + 1);
                let n = 1 + rng.below(16);
                let ins: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                d.splice(i..i, ins);
            }
            6 if len > 0 => {
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(64));
                d.drain(i..i + n);
            }
            7 if len > 0 => {
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(64));
                let chunk = d[i..i + n].to_vec();
                let j = rng.below(len + 1);
                d.splice(j..j, chunk);
            }
            // a u64 length field 8 bytes before a printable run: target string lengths
            _ if len >= 8 => {
                let i = rng.below(len - 7);
                let v = (rng.next() % (len as u64 * 2 + 2)).to_le_bytes();
                d[i..i + 8].copy_from_slice(&v);
            }
            _ => {}
        }
    }
}

/// [`mutate`], or (one time in two when `dict` is not empty) 1–4 dictionary tokens
/// inserted or written over the input: keywords and numbers that random bytes rarely form.
pub fn mutate_with(rng: &mut Rng, d: &mut Vec<u8>, dict: &[&str]) {
    if dict.is_empty() || rng.below(2) == 0 {
        return mutate(rng, d);
    }
    for _ in 0..1 + rng.below(4) {
        let tok = dict[rng.below(dict.len())].as_bytes();
        let i = rng.below(d.len() + 1);
        if rng.below(2) == 0 {
            d.splice(i..i, tok.iter().copied());
        } else {
            let end = (i + tok.len()).min(d.len());
            d.splice(i..end, tok.iter().copied());
        }
    }
}
