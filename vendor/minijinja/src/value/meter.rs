//! gllm-web patch (see `vendor/README.md`): a meter for the work one render does inside value
//! operations, so that fuel bounds time, memory and stack, not only instructions.
//!
//! Upstream fuel counts instructions, but one instruction can print, compare, hash, copy or
//! allocate a value of any size, and recursive value operations follow any nesting (a
//! namespace assigned into itself recursed until the stack overflowed). With this patch:
//! - a recursive value operation (printing, serialising, comparing, hashing) costs one unit
//!   per value it enters plus one per 16 bytes of each string, and stops entering values once
//!   the render's fuel is spent or [`MAX_DEPTH`] levels are open;
//! - iterating a value costs one unit per item;
//! - the VM charges the operands of the operations it calls (their shallow size), walks the
//!   containers an instruction creates (refusing nesting deeper than [`MAX_DEPTH`], which
//!   would also overflow the stack when dropped), and settles the units into the fuel
//!   tracker after every instruction: a render that overdraws fails with `OutOfFuel`;
//! - operations whose output size comes from a number (string repetition, padding widths,
//!   batch counts) charge that size before they allocate.
//!
//! The meter is per thread and is reset by the VM at every instruction of a render with fuel;
//! without fuel it never limits anything.

use std::cell::Cell;

use crate::value::{Value, ValueKind};

/// Deepest nesting of containers a value may have.
pub const MAX_DEPTH: u32 = 48;
/// Bytes of a string per unit of work.
pub const BYTES_PER_UNIT: usize = 16;

/// Why a render's meter stopped it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// The render's fuel is spent.
    Budget,
    /// A value nested deeper than [`MAX_DEPTH`].
    Depth,
}

thread_local! {
    static USED: Cell<u64> = const { Cell::new(0) };
    static LIMIT: Cell<u64> = const { Cell::new(u64::MAX) };
    static DEPTH: Cell<u32> = const { Cell::new(0) };
    static STOP: Cell<Option<Stop>> = const { Cell::new(None) };
}

/// Charges `units` of work; false once the render's allowance is overdrawn (from then on
/// every charge fails until the VM settles).
pub fn charge(units: u64) -> bool {
    let used = USED.with(|u| {
        let v = u.get().saturating_add(units);
        u.set(v);
        v
    });
    if used > LIMIT.with(Cell::get) {
        STOP.with(|s| {
            if s.get().is_none() {
                s.set(Some(Stop::Budget))
            }
        });
        false
    } else {
        true
    }
}

/// Charges the bytes an operation is about to allocate or copy.
pub fn charge_bytes(bytes: usize) -> bool {
    charge((bytes / BYTES_PER_UNIT) as u64 + 1)
}

/// The cost of touching `v` once: one unit, plus its bytes if it is a string, plus its
/// length if it is a container.
pub fn shallow_units(v: &Value) -> u64 {
    1 + match v.kind() {
        ValueKind::String | ValueKind::Bytes => v.as_str().map_or(0, |s| s.len() / BYTES_PER_UNIT) as u64,
        ValueKind::Seq | ValueKind::Map | ValueKind::Iterable => {
            v.as_object().and_then(|o| o.enumerator_len()).unwrap_or(0) as u64
        }
        _ => 0,
    }
}

/// One level of a recursive value operation; leaving it closes the level.
pub struct Level(());

impl Drop for Level {
    fn drop(&mut self) {
        DEPTH.with(|d| d.set(d.get().saturating_sub(1)));
    }
}

/// Enters one level of a recursive operation on `v`, charging [`shallow_units`] (strings by
/// their bytes). `None` when the allowance is overdrawn or too many levels are open: the
/// caller then stops recursing (it prints `…`, compares equal, hashes nothing); the VM fails
/// the render at the end of the instruction.
pub fn enter(v: &Value) -> Option<Level> {
    let units = match v.kind() {
        ValueKind::String | ValueKind::Bytes => 1 + v.as_str().map_or(0, |s| s.len() / BYTES_PER_UNIT) as u64,
        _ => 1,
    };
    if !charge(units) {
        return None;
    }
    DEPTH.with(|d| {
        let n = d.get();
        if n >= MAX_DEPTH {
            STOP.with(|s| {
                if s.get().is_none() {
                    s.set(Some(Stop::Depth))
                }
            });
            None
        } else {
            d.set(n + 1);
            Some(Level(()))
        }
    })
}

/// Walks the containers of `v` (one unit per item), failing past [`MAX_DEPTH`] levels or
/// when the allowance is overdrawn.
pub fn check_nesting(v: &Value) -> Result<(), Stop> {
    fn walk(v: &Value, depth: u32) -> Result<(), Stop> {
        if !matches!(v.kind(), ValueKind::Seq | ValueKind::Map) {
            return Ok(());
        }
        if depth >= MAX_DEPTH {
            return Err(Stop::Depth);
        }
        let Some(obj) = v.as_object() else { return Ok(()) };
        let Some(items) = obj.try_iter_pairs() else { return Ok(()) };
        for (k, item) in items {
            if !charge(1) {
                return Err(Stop::Budget);
            }
            walk(&k, depth + 1)?;
            walk(&item, depth + 1)?;
        }
        Ok(())
    }
    walk(v, 0)
}

/// Takes the work done since the last call: its units and why the meter stopped (if it did).
pub fn take() -> (u64, Option<Stop>) {
    (USED.with(|u| u.replace(0)), STOP.with(|s| s.replace(None)))
}

/// Sets the allowance for what follows to `limit` units.
pub fn set_limit(limit: u64) {
    LIMIT.with(|l| l.set(limit));
}

/// Whether `v` is or holds (inside lists and maps) a namespace: a namespace may not be stored
/// in a namespace, so that no value can contain itself. One unit per item walked.
pub(crate) fn holds_namespace(v: &Value) -> Result<bool, Stop> {
    fn walk(v: &Value, depth: u32) -> Result<bool, Stop> {
        if v.downcast_object_ref::<crate::value::namespace_object::Namespace>().is_some() {
            return Ok(true);
        }
        if !matches!(v.kind(), ValueKind::Seq | ValueKind::Map) {
            return Ok(false);
        }
        if depth >= MAX_DEPTH {
            return Err(Stop::Depth);
        }
        let Some(items) = v.as_object().and_then(|o| o.try_iter_pairs()) else { return Ok(false) };
        for (k, item) in items {
            if !charge(1) {
                return Err(Stop::Budget);
            }
            if walk(&k, depth + 1)? || walk(&item, depth + 1)? {
                return Ok(true);
            }
        }
        Ok(false)
    }
    walk(v, 0)
}

/// The error for a stopped meter.
pub(crate) fn stop_error(stop: Stop) -> crate::Error {
    match stop {
        Stop::Budget => crate::Error::from(crate::ErrorKind::OutOfFuel),
        Stop::Depth => crate::Error::new(
            crate::ErrorKind::InvalidOperation,
            format!("a value is nested deeper than {MAX_DEPTH} levels"),
        ),
    }
}

/// Clears the meter for a render without fuel (no limit).
pub fn unlimit() {
    USED.with(|u| u.set(0));
    STOP.with(|s| s.set(None));
    LIMIT.with(|l| l.set(u64::MAX));
}
