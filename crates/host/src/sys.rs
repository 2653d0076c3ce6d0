//! The crate's only `unsafe`: lending the frame decoder's buffer to an
//! io_uring read, and asking the allocator to return freed memory. (The
//! host doorbell is registered with tokio's reactor through
//! `hostmux-boot`.)

use std::io;

use hostmux_boot::reactor::Registered;
use hostmux_ring::Doorbell;
use hostmux_wire::FrameDecoder;
use tokio_uring::buf::{IoBuf, IoBufMut};

/// Registers the doorbell's eventfd with the current runtime's reactor, for
/// readability (the backend loop waits for rings).
pub(crate) fn doorbell_async(doorbell: Doorbell) -> io::Result<Registered<Doorbell>> {
    Registered::for_reading(doorbell)
}

/// Returns the heap's free pages to the kernel (glibc's `malloc_trim`), so
/// that memory freed after a burst of connections leaves the host's
/// resident set. A no-op with other C libraries.
pub(crate) fn trim_heap() {
    #[cfg(target_env = "gnu")]
    // SAFETY: `malloc_trim` only releases memory the allocator holds free;
    // it takes no pointers and is thread-safe (it locks each arena).
    unsafe {
        libc::malloc_trim(0);
    }
}

/// A frame decoder lent to a read: the read fills the decoder's spare room.
pub(crate) struct DecoderBuf {
    decoder: FrameDecoder,
    ptr: *mut u8,
    len: usize,
    filled: usize,
}

impl DecoderBuf {
    pub(crate) fn new(mut decoder: FrameDecoder) -> Self {
        let spare = decoder.spare_capacity_mut();
        let (ptr, len) = (spare.as_mut_ptr(), spare.len());
        Self {
            decoder,
            ptr,
            len,
            filled: 0,
        }
    }

    pub(crate) fn into_decoder(mut self) -> FrameDecoder {
        self.decoder.commit(self.filled);
        self.decoder
    }
}

// SAFETY: `ptr..ptr + len` is the decoder's spare region, taken from
// `spare_capacity_mut` in `new`. The decoder's buffer is a heap allocation
// owned by `self.decoder`; nothing touches the decoder (so nothing can move,
// grow or free that allocation) until `into_decoder`, which runs only after
// the kernel is done with the buffer. Moving `DecoderBuf` itself does not
// move the heap bytes, so the pointer stays stable.
unsafe impl IoBuf for DecoderBuf {
    fn stable_ptr(&self) -> *const u8 {
        self.ptr
    }

    fn bytes_init(&self) -> usize {
        self.filled
    }

    fn bytes_total(&self) -> usize {
        self.len
    }
}

// SAFETY: as for `IoBuf` above; `set_init` only records how many bytes the
// kernel wrote, never more than `len` (clamped), and the region was already
// initialised memory (the decoder's buffer is always fully initialised).
unsafe impl IoBufMut for DecoderBuf {
    fn stable_mut_ptr(&mut self) -> *mut u8 {
        self.ptr
    }

    unsafe fn set_init(&mut self, pos: usize) {
        self.filled = pos.min(self.len);
    }
}
