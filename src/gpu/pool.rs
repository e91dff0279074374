//! Buffer pool: storage buffers are bucketed by size class (`bucket`) and reused, so a
//! forward pass repeated at the same shapes allocates nothing after the first call.

use std::collections::HashMap;

/// Free storage buffers, keyed by their size class in bytes.
#[derive(Default)]
pub struct BufferPool {
    free: HashMap<u64, Vec<wgpu::Buffer>>,
    /// Bytes currently held in free lists.
    pub(crate) free_bytes: u64,
    /// Cap on `free_bytes`; buffers returned past it are dropped.
    pub(crate) max_free_bytes: u64,
    /// Bytes of the storage buffers tensors hold now (handed out, not yet returned).
    pub(crate) live_bytes: u64,
}

/// Size class of a request: the next power of two up to 1 MiB, then the next multiple
/// of 1 MiB, so a large weight wastes less than 1 MiB.
pub(crate) fn bucket(bytes: u64) -> u64 {
    const MIB: u64 = 1 << 20;
    if bytes <= MIB {
        bytes.max(256).next_power_of_two()
    } else {
        bytes.div_ceil(MIB) * MIB
    }
}

impl BufferPool {
    pub(crate) fn new(max_free_bytes: u64) -> Self {
        Self { free: HashMap::new(), free_bytes: 0, max_free_bytes, live_bytes: 0 }
    }
    pub(crate) fn take(&mut self, bucket: u64) -> Option<wgpu::Buffer> {
        let buf = self.free.get_mut(&bucket)?.pop()?;
        self.free_bytes -= bucket;
        Some(buf)
    }
    /// Counts a buffer handed to a tensor (recycled or new).
    pub(crate) fn lend(&mut self, size: u64) {
        self.live_bytes += size;
    }
    pub(crate) fn put(&mut self, buf: wgpu::Buffer) {
        let size = buf.size();
        self.live_bytes = self.live_bytes.saturating_sub(size);
        if self.free_bytes + size > self.max_free_bytes {
            // Dropped, not destroyed: an op recorded but not yet submitted may still
            // reference it, and wgpu frees it once the last reference is gone.
            return;
        }
        self.free_bytes += size;
        self.free.entry(size).or_default().push(buf);
    }
    /// Drops every free buffer.
    pub(crate) fn clear(&mut self) {
        self.free.clear();
        self.free_bytes = 0;
    }
}
