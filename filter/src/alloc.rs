//! The VM's memory allocator: talc, behind both Rust's global allocator and
//! the C allocation functions (`malloc`, `free`…).
//!
//! Why: wasi-libc's dlmalloc was 9 KB of a module with a 100 KiB budget;
//! talc is a maintained dlmalloc-style allocator (binning, boundary tags,
//! coalescing) of about 2 KB. Defining the C functions here keeps dlmalloc
//! out of the link entirely (wasi-libc's `getenv`, reached from std's panic
//! hook, calls `calloc`).
//!
//! Every block, Rust's or C's, carries the same small header, so either side
//! may free what the other allocated. That matters: Envoy allocates the
//! buffers it hands to the module with the module's `malloc` export when
//! there is one (the build prunes it, but the raw cargo output has it), and
//! the SDK frees them as Rust `Vec`s. Envoy's Wasm VMs are single threaded.
//!
//! Small blocks (at most [`SMALL`] bytes, alignment at most 16) are kept on
//! a free list per 16-byte size class when freed, and taken from it first:
//! a request allocates and frees the same few small blocks (the buffers the
//! host hands back, rendered values, kept headers) every time, and a free
//! list is a few instructions where talc's binning is a few hundred. Such
//! blocks are always made with their class's full size, so any block of a
//! class serves any size of it; they are never given back to talc, so what
//! the lists hold is bounded by the most small blocks ever live at once.

use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;
use core::ptr::null_mut;

static TALC: talc::wasm::WasmDynamicTalc = talc::wasm::new_wasm_dynamic_allocator();

/// Rust's allocator: the C functions below, so blocks are interchangeable.
struct Allocator;

#[global_allocator]
static ALLOCATOR: Allocator = Allocator;

// SAFETY: forwards to `c_alloc`/`free`, which return blocks of at least
// `layout.size()` bytes aligned to `layout.align()`, or null.
unsafe impl GlobalAlloc for Allocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        c_alloc(layout.align(), layout.size())
    }

    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        release(ptr)
    }
}

/// A C allocation: `[offset][size]` sit just below the returned pointer,
/// `offset` bytes above talc's block (C's `free` is not told the layout).
const MIN_OFFSET: usize = 16;

/// The largest small block (see the module docs).
const SMALL: usize = 512;
const CLASS: usize = 16;

/// Free small blocks of each class (class `k` holds `16 k` bytes), linked
/// through their first word.
struct FreeLists(UnsafeCell<[*mut u8; SMALL / CLASS + 1]>);

// SAFETY: Wasm VMs run one thread; nothing here is shared across threads.
unsafe impl Sync for FreeLists {}

static FREE: FreeLists = FreeLists(UnsafeCell::new([null_mut(); SMALL / CLASS + 1]));

/// The class of a block of `size` bytes made with `offset`, if small.
#[inline(always)]
fn class(offset: usize, size: usize) -> Option<usize> {
    // Not `bool::then`: opt-level z would keep it a call.
    if offset == MIN_OFFSET && size <= SMALL {
        Some(size.div_ceil(CLASS).max(1))
    } else {
        None
    }
}

/// A block from its class's free list when there is one (inlined: the
/// common case), else from talc.
#[inline(always)]
unsafe fn c_alloc(align: usize, size: usize) -> *mut u8 {
    let offset = align.max(MIN_OFFSET);
    let class = class(offset, size);
    if let Some(k) = class {
        let head = &mut (*FREE.0.get())[k];
        if !head.is_null() {
            let ptr = *head;
            *head = ptr.cast::<*mut u8>().read();
            ptr.cast::<usize>().sub(1).write(size);
            return ptr;
        }
    }
    talc_alloc(offset, size, class)
}

#[inline(never)]
unsafe fn talc_alloc(offset: usize, size: usize, class: Option<usize>) -> *mut u8 {
    let capacity = class.map_or(size, |k| k * CLASS);
    let Some(layout) = capacity
        .checked_add(offset)
        .and_then(|total| Layout::from_size_align(total, offset).ok())
    else {
        return null_mut();
    };
    let base = TALC.alloc(layout);
    if base.is_null() {
        return base;
    }
    let ptr = base.add(offset);
    ptr.cast::<usize>().sub(2).write(offset);
    ptr.cast::<usize>().sub(1).write(size);
    ptr
}

/// The layout talc gave `ptr`'s block, the block, and the size asked for.
unsafe fn c_block(ptr: *mut u8) -> (*mut u8, Layout, usize) {
    let offset = ptr.cast::<usize>().sub(2).read();
    let size = ptr.cast::<usize>().sub(1).read();
    let capacity = class(offset, size).map_or(size, |k| k * CLASS);
    let layout = Layout::from_size_align_unchecked(capacity + offset, offset);
    (ptr.sub(offset), layout, size)
}

/// `proxy_on_memory_allocate` of the built module (the build exports it
/// under that name in place of the SDK's): a buffer the host is about to
/// hand the module, which frees it as a Rust allocation. Straight to
/// [`malloc`], without the SDK's `Vec` round trip.
#[no_mangle]
pub extern "C" fn header_filter_on_memory_allocate(size: usize) -> *mut u8 {
    // SAFETY: any size; null on failure, which the host reports.
    unsafe { malloc(size) }
}

/// # Safety
/// C `malloc`.
#[no_mangle]
pub unsafe extern "C" fn malloc(size: usize) -> *mut u8 {
    c_alloc(MIN_OFFSET, size)
}

/// # Safety
/// C `calloc`.
#[no_mangle]
pub unsafe extern "C" fn calloc(count: usize, size: usize) -> *mut u8 {
    let Some(total) = count.checked_mul(size) else {
        return null_mut();
    };
    let ptr = malloc(total);
    if !ptr.is_null() {
        ptr.write_bytes(0, total);
    }
    ptr
}

/// # Safety
/// C `aligned_alloc`.
#[no_mangle]
pub unsafe extern "C" fn aligned_alloc(align: usize, size: usize) -> *mut u8 {
    if !align.is_power_of_two() {
        return null_mut();
    }
    c_alloc(align, size)
}

/// # Safety
/// C `posix_memalign`.
#[no_mangle]
pub unsafe extern "C" fn posix_memalign(out: *mut *mut u8, align: usize, size: usize) -> i32 {
    const EINVAL: i32 = 28;
    const ENOMEM: i32 = 48;
    if !align.is_power_of_two() || align < core::mem::size_of::<usize>() {
        return EINVAL;
    }
    let ptr = c_alloc(align, size);
    if ptr.is_null() {
        return ENOMEM;
    }
    out.write(ptr);
    0
}

/// # Safety
/// C `free`: `ptr` is null or came from one of the functions above.
#[no_mangle]
pub unsafe extern "C" fn free(ptr: *mut u8) {
    release(ptr)
}

/// [`free`]: onto its class's free list when small (inlined: the common
/// case), else back to talc.
#[inline(always)]
unsafe fn release(ptr: *mut u8) {
    if ptr.is_null() {
        return;
    }
    let offset = ptr.cast::<usize>().sub(2).read();
    let size = ptr.cast::<usize>().sub(1).read();
    if let Some(k) = class(offset, size) {
        let head = &mut (*FREE.0.get())[k];
        ptr.cast::<*mut u8>().write(*head);
        *head = ptr;
        return;
    }
    talc_free(ptr);
}

#[inline(never)]
unsafe fn talc_free(ptr: *mut u8) {
    let (base, layout, _) = c_block(ptr);
    TALC.dealloc(base, layout);
}

/// # Safety
/// C `realloc`.
#[no_mangle]
pub unsafe extern "C" fn realloc(ptr: *mut u8, size: usize) -> *mut u8 {
    if ptr.is_null() {
        return malloc(size);
    }
    let (_, _, old_size) = c_block(ptr);
    let new = malloc(size);
    if !new.is_null() {
        new.copy_from_nonoverlapping(ptr, old_size.min(size));
        free(ptr);
    }
    new
}

/// # Safety
/// C `malloc_usable_size`.
#[no_mangle]
pub unsafe extern "C" fn malloc_usable_size(ptr: *mut u8) -> usize {
    if ptr.is_null() {
        0
    } else {
        c_block(ptr).2
    }
}
