//! The provided buffers of a ring's multishot receives (part of
//! [`super`], whose invariants hold here: this is `unsafe` code too).

use std::cell::Cell;
use std::io;
use std::rc::Rc;
use std::sync::atomic::{AtomicU16, Ordering};

/// The buffer group id of the ring's provided buffers (one group a ring).
pub(super) const BUF_GROUP: u16 = 0;

/// Offsets in `struct io_uring_buf` (linux/io_uring.h): `addr: u64` at 0,
/// `len: u32` at 8, `bid: u16` at 12; the first entry's `resv: u16` at 14
/// is the ring's tail.
const BUF_ENTRY_LEN: usize = 16;

/// A buffer ring and its buffers, in one anonymous mapping: the entries
/// (page-aligned, as the kernel requires) and then `count` buffers of
/// `len` bytes. Single-threaded, as its ring is.
pub(crate) struct BufPool {
    map: *mut u8,
    map_len: usize,
    /// The ring of `count` entries the kernel takes buffers from.
    pub(super) entries: *mut u8,
    bufs: *mut u8,
    pub(super) count: u16,
    len: u32,
    /// The next tail to publish (entries written, kernel told at once).
    tail: Cell<u16>,
    /// Buffers handed to chunks and not yet given back.
    pub(super) out: Cell<u16>,
}

impl BufPool {
    pub(super) fn new(count: u16, len: u32) -> io::Result<BufPool> {
        if !count.is_power_of_two() || count > 1 << 15 || len == 0 {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        }
        let page = 4096;
        let ring_len = (usize::from(count) * BUF_ENTRY_LEN).next_multiple_of(page);
        let map_len = ring_len + usize::from(count) * len as usize;
        // SAFETY: an anonymous private mapping at an address of the
        // kernel's choice; no existing memory is touched.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if map == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let map = map.cast::<u8>();
        let pool = BufPool {
            map,
            map_len,
            entries: map,
            // SAFETY: `ring_len` is inside the mapping of `map_len` bytes.
            bufs: unsafe { map.add(ring_len) },
            count,
            len,
            tail: Cell::new(0),
            out: Cell::new(count),
        };
        for bid in 0..count {
            pool.give_back(bid);
        }
        Ok(pool)
    }

    /// Puts buffer `bid` back in the ring (the kernel may fill it again).
    fn give_back(&self, bid: u16) {
        let tail = self.tail.get();
        let at = usize::from(tail & (self.count - 1)) * BUF_ENTRY_LEN;
        let addr = self.buf_ptr(bid) as u64;
        // SAFETY: `at` is one of the `count` entries inside the mapping;
        // the kernel reads an entry only once the tail published below
        // covers it, and this one is past the published tail. Raw writes
        // of the three fields: the first entry's last two bytes are the
        // tail, which the kernel reads, so no reference to an entry is
        // formed.
        unsafe {
            let entry = self.entries.add(at);
            entry.cast::<u64>().write(addr);
            entry.add(8).cast::<u32>().write(self.len);
            entry.add(12).cast::<u16>().write(bid);
        }
        let tail = tail.wrapping_add(1);
        self.tail.set(tail);
        // SAFETY: the tail is the 2-aligned `u16` at offset 14 of the
        // mapping, which lives as long as `self`; the kernel reads it
        // atomically, as this writes it.
        let shared = unsafe { AtomicU16::from_ptr(self.entries.add(14).cast::<u16>()) };
        // Release: the entry's fields are visible before the new tail.
        shared.store(tail, Ordering::Release);
        self.out.set(self.out.get() - 1);
    }

    fn buf_ptr(&self, bid: u16) -> *mut u8 {
        let bid = bid.min(self.count - 1);
        // SAFETY: in bounds of the mapping for every `bid < count`.
        unsafe { self.bufs.add(usize::from(bid) * self.len as usize) }
    }
}

impl Drop for BufPool {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`; the ring unregistered the
        // group before letting go of the pool, and no chunk is left (each
        // holds an `Rc` of it).
        unsafe {
            libc::munmap(self.map.cast(), self.map_len);
        }
    }
}

/// A provided buffer the kernel filled and a multishot receive delivered:
/// the bytes `start..end` of it are the stream's next bytes. Its own until
/// dropped, which gives the buffer back to the ring.
pub(crate) struct Chunk {
    pool: Rc<BufPool>,
    bid: u16,
    start: u32,
    end: u32,
}

impl Chunk {
    /// The chunk of buffer `bid` the kernel reported `result` bytes in.
    pub(super) fn new(pool: &Rc<BufPool>, bid: u16, result: i32) -> Chunk {
        pool.out.set(pool.out.get() + 1);
        let end = u32::try_from(result).unwrap_or(0).min(pool.len);
        Chunk {
            pool: pool.clone(),
            bid: bid.min(pool.count - 1),
            start: 0,
            end,
        }
    }

    /// The bytes not yet consumed.
    pub(crate) fn bytes(&self) -> &[u8] {
        let ptr = self.pool.buf_ptr(self.bid);
        // SAFETY: the kernel handed buffer `bid` over with `end <= len`
        // bytes written (the completion was read with acquire ordering) and
        // takes it back only after `give_back` in this chunk's drop; no
        // other chunk names it meanwhile; the mapping lives while `pool`
        // does.
        unsafe { std::slice::from_raw_parts(ptr.add(self.start as usize), self.len()) }
    }

    /// Bytes not yet consumed.
    pub(crate) fn len(&self) -> usize {
        (self.end - self.start) as usize
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// Marks the first `n` bytes consumed.
    pub(crate) fn advance(&mut self, n: usize) {
        let n = u32::try_from(n.min(self.len())).unwrap_or(0);
        self.start += n;
    }
}

impl Drop for Chunk {
    fn drop(&mut self) {
        self.pool.give_back(self.bid);
    }
}

impl std::ops::Deref for Chunk {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.bytes()
    }
}
