//! The ring's memory: a sealed memfd mapped `MAP_SHARED` (with
//! `MAP_POPULATE` when the ring's [`RingMemory`] says so), or a heap block
//! with the same layout (tests, Miri, fuzzing). The crate's only `unsafe`
//! code lives here.
//!
//! A [`Region`] hands out references to the header atomics and to record
//! payloads. Payload bytes are memory the peer process may write at any time:
//! the ring protocol keeps *this* process's readers and writer apart, and the
//! consumer treats payload contents as untrusted bytes.

use std::alloc::Layout;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use rustix::fs::{MemfdFlags, SealFlags};
use rustix::mm::{MapFlags, ProtFlags};

use crate::error::RingError;
use crate::layout::{
    Word, HEADER_LEN, MAGIC, MAX_CAPACITY, MIN_CAPACITY, OFF_CAPACITY, OFF_HEAD, OFF_HEADER_LEN,
    OFF_MAGIC, OFF_TAIL, OFF_VERSION, RECORD_ALIGN, VERSION,
};
use crate::memory::RingMemory;

/// Where the bytes come from.
#[derive(Debug)]
enum Backing {
    /// A shared mapping of a memfd (the mapping outlives the fd).
    Mapped,
    /// A zeroed heap block (in-process use only).
    Heap { layout: Layout },
}

/// Header plus data region of one ring.
#[derive(Debug)]
pub(crate) struct Region {
    base: NonNull<u8>,
    /// Header plus data bytes.
    len: usize,
    /// Data bytes (a power of two).
    capacity: u64,
    backing: Backing,
    /// Whether the single [`WriteToken`] was handed out.
    token_taken: AtomicBool,
    /// Whether a [`HoldToken`] is out (a record held across an await).
    held: AtomicBool,
}

// SAFETY: `Region` owns its mapping or heap block; all shared access goes
// through atomics or through slices whose exclusivity the ring protocol and
// `WriteToken` guarantee within this process. Nothing is tied to a thread.
unsafe impl Send for Region {}
// SAFETY: as above; `&Region` only exposes atomics and protocol-guarded slices.
unsafe impl Sync for Region {}

/// Proof of being the one writer of a region's payload bytes in this process.
#[derive(Debug)]
pub(crate) struct WriteToken {
    region: NonNull<u8>,
}

// SAFETY: the token is a marker holding an address it never dereferences.
unsafe impl Send for WriteToken {}
// SAFETY: as above.
unsafe impl Sync for WriteToken {}

/// Proof of holding a region's one held record (see `Producer::hold`):
/// while it is out, the producer reserves nothing, so the held bytes have
/// no other writer in this process.
#[derive(Debug)]
pub(crate) struct HoldToken {
    region: NonNull<u8>,
}

// SAFETY: the token is a marker holding an address it never dereferences.
unsafe impl Send for HoldToken {}
// SAFETY: as above.
unsafe impl Sync for HoldToken {}

fn check_capacity(capacity: usize, min: usize) -> Result<(), RingError> {
    if !capacity.is_power_of_two() || capacity < min || capacity > MAX_CAPACITY {
        return Err(RingError::InvalidCapacity {
            capacity,
            min,
            max: MAX_CAPACITY,
        });
    }
    Ok(())
}

impl Region {
    /// A new ring in a fresh memfd, sealed against resizing (a peer that could
    /// shrink it would make our accesses fault), mapped, and pre-faulted if
    /// `memory` is [`RingMemory::Populated`].
    pub(crate) fn create(
        capacity: usize,
        memory: RingMemory,
    ) -> Result<(Region, OwnedFd), RingError> {
        check_capacity(capacity, MIN_CAPACITY)?;
        let len = HEADER_LEN + capacity;
        let memfd = rustix::fs::memfd_create(
            "hostmux-ring",
            MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING,
        )
        .map_err(|e| RingError::os("memfd_create", e))?;
        rustix::fs::ftruncate(&memfd, len as u64).map_err(|e| RingError::os("ftruncate", e))?;
        rustix::fs::fcntl_add_seals(
            &memfd,
            SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL,
        )
        .map_err(|e| RingError::os("fcntl(F_ADD_SEALS)", e))?;
        let populate = memory == RingMemory::Populated;
        let region = Region::map(&memfd, len, capacity as u64, populate)?;
        region.init_header();
        Ok((region, memfd))
    }

    /// Map a ring another process created, checking seals, size and header.
    ///
    /// The mapping is pre-faulted only if the memfd's pages all exist
    /// already (the creator chose [`RingMemory::Populated`]): then
    /// `MAP_POPULATE` only fills this process's page tables. For a ring
    /// created [`RingMemory::OnDemand`] it would allocate every page of the
    /// memfd, undoing the creator's choice, so the mapping stays lazy.
    pub(crate) fn attach(memfd: BorrowedFd<'_>) -> Result<Region, RingError> {
        let seals = rustix::fs::fcntl_get_seals(memfd)
            .map_err(|e| RingError::os("fcntl(F_GET_SEALS)", e))?;
        if !seals.contains(SealFlags::SHRINK) {
            return Err(RingError::corrupted(
                "ring memfd not sealed against shrinking",
            ));
        }
        let stat = rustix::fs::fstat(memfd).map_err(|e| RingError::os("fstat", e))?;
        let size = usize::try_from(stat.st_size).unwrap_or(0);
        let Some(capacity) = size.checked_sub(HEADER_LEN) else {
            return Err(RingError::corrupted(
                "ring memfd smaller than the ring header",
            ));
        };
        check_capacity(capacity, MIN_CAPACITY)?;
        let populate = RingMemory::of_memfd(&stat, size) == RingMemory::Populated;
        let region = Region::map(&memfd, size, capacity as u64, populate)?;
        region.check_header()?;
        Ok(region)
    }

    fn map(
        memfd: &impl AsFd,
        len: usize,
        capacity: u64,
        populate: bool,
    ) -> Result<Region, RingError> {
        let flags = if populate {
            MapFlags::SHARED | MapFlags::POPULATE
        } else {
            MapFlags::SHARED
        };
        // SAFETY: a fresh mapping (null hint) of `len` bytes of a memfd that is
        // at least `len` long and sealed against shrinking, so every byte stays
        // backed for the mapping's life. No Rust object aliases it yet.
        let ptr = unsafe {
            rustix::mm::mmap(
                std::ptr::null_mut(),
                len,
                ProtFlags::READ | ProtFlags::WRITE,
                flags,
                memfd,
                0,
            )
        }
        .map_err(|e| RingError::os("mmap", e))?;
        let base = NonNull::new(ptr.cast::<u8>())
            .ok_or_else(|| RingError::corrupted("mmap returned a null address"))?;
        Ok(Region {
            base,
            len,
            capacity,
            backing: Backing::Mapped,
            token_taken: AtomicBool::new(false),
            held: AtomicBool::new(false),
        })
    }

    /// A zeroed heap region with a fresh header. Capacity may be tiny (>= 32)
    /// so tests wrap often.
    pub(crate) fn heap(capacity: usize) -> Result<Region, RingError> {
        check_capacity(capacity, 2 * RECORD_ALIGN as usize)?;
        let len = HEADER_LEN + capacity;
        let layout =
            Layout::from_size_align(len, 4096).map_err(|_| RingError::InvalidCapacity {
                capacity,
                min: 32,
                max: MAX_CAPACITY,
            })?;
        // SAFETY: `layout` has a non-zero size (at least HEADER_LEN).
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        let Some(base) = NonNull::new(ptr) else {
            std::alloc::handle_alloc_error(layout);
        };
        let region = Region {
            base,
            len,
            capacity: capacity as u64,
            backing: Backing::Heap { layout },
            token_taken: AtomicBool::new(false),
            held: AtomicBool::new(false),
        };
        region.init_header();
        Ok(region)
    }

    fn init_header(&self) {
        self.u64_at(OFF_MAGIC).store(MAGIC, Ordering::Relaxed);
        self.u32_at(OFF_VERSION).store(VERSION, Ordering::Relaxed);
        self.u32_at(OFF_HEADER_LEN)
            .store(HEADER_LEN as u32, Ordering::Relaxed);
        self.u64_at(OFF_CAPACITY)
            .store(self.capacity, Ordering::Release);
    }

    fn check_header(&self) -> Result<(), RingError> {
        if self.u64_at(OFF_MAGIC).load(Ordering::Acquire) != MAGIC {
            return Err(RingError::corrupted("ring header magic mismatch"));
        }
        if self.u32_at(OFF_VERSION).load(Ordering::Relaxed) != VERSION {
            return Err(RingError::corrupted("ring header version unsupported"));
        }
        if self.u32_at(OFF_HEADER_LEN).load(Ordering::Relaxed) as usize != HEADER_LEN {
            return Err(RingError::corrupted("ring header length mismatch"));
        }
        if self.u64_at(OFF_CAPACITY).load(Ordering::Relaxed) != self.capacity {
            return Err(RingError::corrupted(
                "ring header capacity does not match the memfd size",
            ));
        }
        Ok(())
    }

    pub(crate) fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Hand out the region's one write token (`None` after the first call).
    pub(crate) fn take_write_token(&self) -> Option<WriteToken> {
        if self.token_taken.swap(true, Ordering::AcqRel) {
            return None;
        }
        Some(WriteToken { region: self.base })
    }

    /// Hand out the region's one hold token (`None` while one is out).
    pub(crate) fn take_hold(&self) -> Option<HoldToken> {
        if self.held.swap(true, Ordering::AcqRel) {
            return None;
        }
        Some(HoldToken { region: self.base })
    }

    /// Gives the hold token back: the producer may reserve again.
    pub(crate) fn release_hold(&self, token: HoldToken) {
        if token.region == self.base {
            self.held.store(false, Ordering::Release);
        }
    }

    /// Whether a hold token is out.
    #[inline]
    pub(crate) fn is_held(&self) -> bool {
        self.held.load(Ordering::Acquire)
    }

    #[inline]
    fn u64_at(&self, offset: usize) -> &AtomicU64 {
        assert!(
            offset % 8 == 0 && offset + 8 <= self.len,
            "u64 word outside the ring"
        );
        // SAFETY: in bounds and 8-aligned (the base is page-aligned); the
        // memory lives as long as `self`; `AtomicU64` has the layout of `u64`
        // and every access to this word, ours or the peer's, is atomic or
        // outside this process.
        unsafe { &*self.base.as_ptr().add(offset).cast::<AtomicU64>() }
    }

    #[inline]
    fn u32_at(&self, offset: usize) -> &AtomicU32 {
        assert!(
            offset % 4 == 0 && offset + 4 <= self.len,
            "u32 word outside the ring"
        );
        // SAFETY: as in `u64_at`, for a 4-aligned in-bounds word.
        unsafe { &*self.base.as_ptr().add(offset).cast::<AtomicU32>() }
    }

    #[inline]
    fn data_range(&self, offset: u64, len: u64) -> Option<usize> {
        let end = offset.checked_add(len)?;
        if end > self.capacity {
            return None;
        }
        Some(HEADER_LEN + offset as usize)
    }

    /// `len` payload bytes at data offset `offset`, or `None` if outside the data region.
    #[inline]
    pub(crate) fn bytes(&self, offset: u64, len: u64) -> Option<&[u8]> {
        let start = self.data_range(offset, len)?;
        // SAFETY: in bounds (checked above); the consumer reads only ranges the
        // producer published and has not been told are free, so no `&mut`
        // from this process's `WriteToken` overlaps them.
        Some(unsafe { std::slice::from_raw_parts(self.base.as_ptr().add(start), len as usize) })
    }

    /// Writable payload bytes; needs this region's [`WriteToken`] borrowed
    /// mutably for as long as the slice lives.
    #[inline]
    pub(crate) fn bytes_mut<'a>(
        &'a self,
        token: &'a mut WriteToken,
        offset: u64,
        len: u64,
    ) -> Option<&'a mut [u8]> {
        if token.region != self.base {
            return None;
        }
        let start = self.data_range(offset, len)?;
        // SAFETY: in bounds (checked above). The unique token borrowed for 'a
        // means no other `&mut` into this region exists in this process; the
        // producer reserves only bytes the consumer released, so no `&[u8]`
        // from `bytes` overlaps them.
        Some(unsafe { std::slice::from_raw_parts_mut(self.base.as_ptr().add(start), len as usize) })
    }

    /// The payload bytes of the held record; needs the region's
    /// [`HoldToken`] borrowed mutably for as long as the slice lives.
    #[inline]
    pub(crate) fn held_bytes_mut<'a>(
        &'a self,
        token: &'a mut HoldToken,
        offset: u64,
        len: u64,
    ) -> Option<&'a mut [u8]> {
        if token.region != self.base {
            return None;
        }
        let start = self.data_range(offset, len)?;
        // SAFETY: in bounds (checked above). The held range was reserved by
        // the producer and is neither committed nor published, so the
        // consumer holds no `&[u8]` into it; while the unique hold token is
        // out the producer reserves nothing (`Producer::try_reserve` refuses),
        // so no `Reservation`'s `&mut` overlaps it; and the token is borrowed
        // mutably for 'a, so this is the only such slice.
        Some(unsafe { std::slice::from_raw_parts_mut(self.base.as_ptr().add(start), len as usize) })
    }

    /// Overwrite raw bytes anywhere in the region, as a hostile peer would
    /// (tests and fuzzing). Out-of-range parts are ignored.
    pub(crate) fn scribble(&self, offset: usize, bytes: &[u8]) {
        let Some(room) = self.len.checked_sub(offset) else {
            return;
        };
        let n = bytes.len().min(room);
        // SAFETY: `offset + n <= len`; callers hold no slices into the region
        // while scribbling (tests and the fuzz driver are single-threaded and
        // drop every borrowed record first), and shared words are atomics.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.base.as_ptr().add(offset), n) }
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        match &self.backing {
            Backing::Mapped => {
                // SAFETY: unmaps exactly the mapping created in `map`; no
                // references into it outlive `self`. An error cannot be handled
                // here and leaves only the mapping behind.
                let _ = unsafe { rustix::mm::munmap(self.base.as_ptr().cast(), self.len) };
            }
            Backing::Heap { layout } => {
                // SAFETY: allocated in `heap` with this very layout.
                unsafe { std::alloc::dealloc(self.base.as_ptr(), *layout) }
            }
        }
    }
}

#[cfg(not(loom))]
impl crate::protocol::Storage for Region {
    #[inline]
    fn tail(&self) -> &AtomicU64 {
        self.u64_at(OFF_TAIL)
    }

    #[inline]
    fn head(&self) -> &AtomicU64 {
        self.u64_at(OFF_HEAD)
    }

    #[inline]
    fn word(&self, word: Word) -> &AtomicU32 {
        self.u32_at(word.offset())
    }

    #[inline]
    fn record_word(&self, pos: u64) -> &AtomicU64 {
        let pos = pos & (self.capacity - 1) & !(RECORD_ALIGN - 1);
        self.u64_at(HEADER_LEN + pos as usize)
    }
}
