//! GGUF metadata memory is proportional to the bytes read (issue 20): a header near the
//! 256 MiB cap, made of the arrays that cost most per byte in a naive representation
//! (one-byte elements, short strings), is read with a peak allocation under twice the
//! header's size, counted by this binary's global allocator. `gllm inspect` prints it.
//! One test only: the allocator counts every thread of the process.
#![cfg(not(target_arch = "wasm32"))]

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use gllm_web::loader::gguf::{GgufFile, MAX_HEADER_BYTES};
use gllm_web::loader::FileSource;

struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(n: usize) {
    let now = CURRENT.fetch_add(n, Relaxed) + n;
    PEAK.fetch_max(now, Relaxed);
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(l) };
        if !p.is_null() {
            grew(l.size());
        }
        p
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(l) };
        if !p.is_null() {
            grew(l.size());
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) };
        CURRENT.fetch_sub(l.size(), Relaxed);
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        let q = unsafe { System.realloc(p, l, new) };
        if !q.is_null() {
            if new >= l.size() {
                grew(new - l.size());
            } else {
                CURRENT.fetch_sub(l.size() - new, Relaxed);
            }
        }
        q
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const U8_ARRAYS: usize = 12;
const U8_LEN: usize = 16 << 20;
const STRINGS: usize = 2 << 20;
const I32_LEN: usize = 2 << 20;

fn put_str(w: &mut impl Write, s: &str) {
    w.write_all(&(s.len() as u64).to_le_bytes()).unwrap();
    w.write_all(s.as_bytes()).unwrap();
}

/// Writes the GGUF (no tensors) straight to disk; returns its length.
fn write_big(path: &std::path::Path) -> u64 {
    let mut w = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    w.write_all(b"GGUF").unwrap();
    w.write_all(&3u32.to_le_bytes()).unwrap();
    w.write_all(&0u64.to_le_bytes()).unwrap();
    w.write_all(&((U8_ARRAYS + 3) as u64).to_le_bytes()).unwrap();
    let chunk = vec![7u8; 1 << 20];
    for k in 0..U8_ARRAYS {
        put_str(&mut w, &format!("big.u8.{k}"));
        w.write_all(&9u32.to_le_bytes()).unwrap();
        w.write_all(&0u32.to_le_bytes()).unwrap();
        w.write_all(&(U8_LEN as u64).to_le_bytes()).unwrap();
        for _ in 0..U8_LEN >> 20 {
            w.write_all(&chunk).unwrap();
        }
    }
    put_str(&mut w, "big.strings");
    w.write_all(&9u32.to_le_bytes()).unwrap();
    w.write_all(&8u32.to_le_bytes()).unwrap();
    w.write_all(&(STRINGS as u64).to_le_bytes()).unwrap();
    for i in 0..STRINGS {
        put_str(&mut w, &format!("{:010}", i));
    }
    put_str(&mut w, "big.i32");
    w.write_all(&9u32.to_le_bytes()).unwrap();
    w.write_all(&5u32.to_le_bytes()).unwrap();
    w.write_all(&(I32_LEN as u64).to_le_bytes()).unwrap();
    for i in 0..I32_LEN as i32 {
        w.write_all(&(-i).to_le_bytes()).unwrap();
    }
    put_str(&mut w, "general.architecture");
    w.write_all(&8u32.to_le_bytes()).unwrap();
    put_str(&mut w, "llama");
    // the (empty) data region starts at the next multiple of the default alignment
    let written = std::io::Seek::stream_position(&mut w).unwrap() as usize;
    w.write_all(&vec![0u8; written.next_multiple_of(32) - written]).unwrap();
    w.flush().unwrap();
    drop(w);
    std::fs::metadata(path).unwrap().len()
}

#[test]
fn header_near_the_cap_costs_less_than_twice_its_size() {
    let dir = std::env::temp_dir().join(format!("gllm-gguf-memory-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("big.gguf");
    let len = write_big(&path);
    assert!(len > MAX_HEADER_BYTES * 7 / 8 && len <= MAX_HEADER_BYTES, "header of {len} bytes is not near the cap");

    let base = CURRENT.load(Relaxed);
    PEAK.store(base, Relaxed);
    let src = FileSource::new(&dir);
    let g = pollster::block_on(GgufFile::read(&src, "big.gguf")).unwrap();
    // what `gllm inspect` does with it (arrays summarised)
    let json = serde_json::to_string_pretty(&g.to_json(16)).unwrap();
    let peak = PEAK.load(Relaxed) - base;
    eprintln!("header {len} bytes, peak allocation {peak} bytes ({:.2}x)", peak as f64 / len as f64);
    assert!((peak as u64) < 2 * len, "peak allocation {peak} bytes is not under twice the {len}-byte header");

    // and the metadata is all there
    assert_eq!(g.meta_array("big.u8.11").unwrap().len(), U8_LEN);
    assert_eq!(g.meta_array("big.u8.3").unwrap().get(U8_LEN - 1).and_then(|v| v.as_u64()), Some(7));
    let s = g.meta_array("big.strings").unwrap().as_strings().unwrap();
    assert_eq!((s.len(), s.get(1234567)), (STRINGS, Some("0001234567")));
    assert_eq!(g.meta_array("big.i32").unwrap().get(5).and_then(|v| v.as_i64()), Some(-5));
    assert_eq!(g.architecture().unwrap(), "llama");
    assert!(json.contains("\"len\": 16777216") && json.contains("\"type\": \"[STRING]\""), "{}", &json[..json.len().min(2000)]);
    drop(g);

    // `gllm inspect` on the same file
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gllm")).arg("inspect").arg(&path).output().unwrap();
    assert!(out.status.success(), "gllm inspect failed: {}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["metadata"]["big.strings"]["len"], STRINGS);
    assert_eq!(v["metadata"]["general.architecture"], "llama");
    std::fs::remove_dir_all(&dir).ok();
}
