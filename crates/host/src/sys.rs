//! The crate's only `unsafe`: lending the frame decoder's buffer to an
//! io_uring read, duplicating (or reading without blocking from) a socket
//! tokio-uring owns, asking the allocator to return freed memory, and reading
//! the network interfaces' addresses (`getifaddrs`). (The
//! host doorbell is registered with tokio's reactor through
//! `hostmux-boot`.)

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

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

/// The IP addresses of this machine's network interfaces that are up
/// (`getifaddrs(3)`), in the kernel's order, repeats included. Read when a
/// host bound to `0.0.0.0` or `[::]` starts (`crate::identity`).
pub(crate) fn interface_addrs() -> io::Result<Vec<IpAddr>> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: `head` is a valid place for `getifaddrs` to store the list it
    // allocates; on failure it stores nothing and returns -1.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut ips = Vec::new();
    let mut next = head;
    while !next.is_null() {
        // SAFETY: `next` is a non-null node of the list `getifaddrs` made,
        // which stays allocated until `freeifaddrs` below.
        let entry = unsafe { &*next };
        next = entry.ifa_next;
        if entry.ifa_addr.is_null() || entry.ifa_flags & libc::IFF_UP as u32 == 0 {
            continue;
        }
        // SAFETY: a non-null `ifa_addr` points to a socket address whose
        // `sa_family` tells its real type; it lives as long as the list.
        let family = i32::from(unsafe { (*entry.ifa_addr).sa_family });
        match family {
            libc::AF_INET => {
                // SAFETY: an `AF_INET` address is a `sockaddr_in`.
                let v4 = unsafe { &*entry.ifa_addr.cast::<libc::sockaddr_in>() };
                ips.push(IpAddr::V4(Ipv4Addr::from(u32::from_be(v4.sin_addr.s_addr))));
            }
            libc::AF_INET6 => {
                // SAFETY: an `AF_INET6` address is a `sockaddr_in6`.
                let v6 = unsafe { &*entry.ifa_addr.cast::<libc::sockaddr_in6>() };
                ips.push(IpAddr::V6(Ipv6Addr::from(v6.sin6_addr.s6_addr)));
            }
            _ => {}
        }
    }
    // SAFETY: `head` came from a successful `getifaddrs` and is freed once;
    // no reference into the list outlives this call.
    unsafe { libc::freeifaddrs(head) };
    Ok(ips)
}

/// A close-on-exec duplicate of a socket tokio-uring owns (its streams
/// offer only `AsRawFd`), to register with tokio's reactor.
pub(crate) fn duplicate_socket(socket: &impl AsRawFd) -> io::Result<OwnedFd> {
    // SAFETY: `socket` is an open stream borrowed for the whole call, so
    // its fd is open and names that socket while the `BorrowedFd` lives
    // (it does not outlive this function).
    let fd = unsafe { BorrowedFd::borrow_raw(socket.as_raw_fd()) };
    fd.try_clone_to_owned()
}

/// One non-blocking `recv` (`MSG_DONTWAIT`) on a socket tokio-uring owns
/// (its streams offer only `AsRawFd`), straight into `buf`: the io_uring
/// frontend's read while a socket has a backlog (see [`crate::uring`]).
pub(crate) fn recv_now(socket: &impl AsRawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `socket` is an open stream borrowed for the whole call, so
    // its fd is open and names that socket while the `BorrowedFd` lives
    // (it does not outlive this function).
    let fd = unsafe { BorrowedFd::borrow_raw(socket.as_raw_fd()) };
    crate::frontend::recv_now(fd, buf)
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
