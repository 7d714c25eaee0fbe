//! Transparent huge pages (2 MiB) for the backend's long-lived buffers: weights, LoRA stacks,
//! the KV cache. A decode step touches every page of the weights and of the adapters it uses
//! (about 30 000 pages of 4 KiB for SmolLM2 in Q4_1 with three adapters), far more than the
//! TLB holds, so each step walks the page tables again; the LoRA stacks' short runs of rows
//! pay the most. Measured on the dev machine in alternating runs (`bench --only
//! base,single,fused3 --rounds 15`, three pairs): fused3 / base 1.19–1.24 with huge pages,
//! 1.20–1.29 without; base decode unchanged within the machine's drift.
//!
//! Only advice: where the kernel has no transparent huge pages (or on another OS), nothing
//! changes.

/// Bytes of a huge page (x86-64 and aarch64 Linux with 4 KiB base pages).
const HUGE: usize = 2 << 20;

/// What the kernel did with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Advice {
    /// The kernel took it.
    Taken,
    /// The range holds no whole huge page, so nothing was asked.
    TooSmall,
    /// The kernel refused it (`errno`): no transparent huge pages, an old kernel, another OS
    /// (`0`).
    Refused(i32),
}

/// Backs the memory of `v`, already written, with huge pages now (`MADV_COLLAPSE`, Linux
/// 6.1+): every 2 MiB-aligned range that overlaps `v` and lies inside its mapping, so small
/// buffers share huge pages with their neighbours on the heap.
pub fn collapse<T>(v: &[T]) -> Advice {
    let (start, end) = span(v);
    if start == end {
        return Advice::TooSmall;
    }
    // One call per huge page: the first and last may reach past the mapping, and the kernel
    // then fails the whole call.
    let mut last = Advice::TooSmall;
    for at in (start & !(HUGE - 1)..end).step_by(HUGE) {
        match advise(at, at + HUGE, COLLAPSE) {
            Advice::Taken => last = Advice::Taken,
            refused if last != Advice::Taken => last = refused,
            _ => {}
        }
    }
    last
}

/// Asks for huge pages for the parts of `v` not yet touched (`MADV_HUGEPAGE` on the
/// 2 MiB-aligned ranges inside it): for zeroed buffers that fill lazily, such as the KV cache,
/// whose pages would all be made resident by [`collapse`].
pub fn advise_lazy<T>(v: &[T]) -> Advice {
    let (start, end) = span(v);
    advise(start.next_multiple_of(HUGE), end & !(HUGE - 1), HUGEPAGE)
}

/// Gives the whole 4 KiB pages inside `v` back to the kernel (`MADV_DONTNEED`): they read as
/// zeros afterwards and count in resident memory again only once written. For a server's KV
/// slot whose sequence has ended, so memory follows what running sequences hold.
pub fn discard(v: &mut [f32]) -> Advice {
    const PAGE: usize = 4096;
    let (start, end) = span(v);
    let (from, to) = (start.next_multiple_of(PAGE), end & !(PAGE - 1));
    if to <= from {
        return Advice::TooSmall;
    }
    #[cfg(target_os = "linux")]
    {
        // SAFETY: the range is whole pages inside `v`, which we hold mutably; they belong to
        // this allocation alone (private anonymous memory, heap or mmap), and after the call
        // they read as zero, a valid f32 — exactly as if we had written zeros.
        let rc =
            unsafe { libc::madvise(from as *mut libc::c_void, to - from, libc::MADV_DONTNEED) };
        if rc == 0 {
            Advice::Taken
        } else {
            Advice::Refused(std::io::Error::last_os_error().raw_os_error().unwrap_or(-1))
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        Advice::Refused(0)
    }
}

fn span<T>(v: &[T]) -> (usize, usize) {
    let start = v.as_ptr() as usize;
    (start, start + std::mem::size_of_val(v))
}

#[cfg(target_os = "linux")]
const COLLAPSE: i32 = 25; // MADV_COLLAPSE (not in every libc version's constants)
#[cfg(target_os = "linux")]
const HUGEPAGE: i32 = libc::MADV_HUGEPAGE;
#[cfg(not(target_os = "linux"))]
const COLLAPSE: i32 = 0;
#[cfg(not(target_os = "linux"))]
const HUGEPAGE: i32 = 0;

fn advise(from: usize, to: usize, advice: i32) -> Advice {
    if to <= from {
        return Advice::TooSmall;
    }
    #[cfg(target_os = "linux")]
    {
        // SAFETY: advice about pages of this process's own mappings (the range is page
        // aligned); neither advice changes what the memory holds. Parts of the range that
        // are not mapped only make the call fail.
        let rc = unsafe { libc::madvise(from as *mut libc::c_void, to - from, advice) };
        if rc == 0 {
            Advice::Taken
        } else {
            Advice::Refused(std::io::Error::last_os_error().raw_os_error().unwrap_or(-1))
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = advice;
        Advice::Refused(0)
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// kB of `AnonHugePages` in the mapping of `/proc/self/smaps` that holds `addr`.
    fn huge_kb_at(addr: usize) -> Option<usize> {
        let smaps = std::fs::read_to_string("/proc/self/smaps").ok()?;
        let mut inside = false;
        for line in smaps.lines() {
            if let Some((range, _)) = line.split_once(' ') {
                if let Some((a, b)) = range.split_once('-') {
                    if let (Ok(a), Ok(b)) =
                        (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16))
                    {
                        inside = (a..b).contains(&addr);
                        continue;
                    }
                }
            }
            if let (true, Some(kb)) = (inside, line.strip_prefix("AnonHugePages:")) {
                return kb.trim().trim_end_matches(" kB").trim().parse().ok();
            }
        }
        None
    }

    #[test]
    fn collapse_backs_a_written_buffer_with_huge_pages() {
        let thp = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled")
            .unwrap_or_default();
        if thp.is_empty() || thp.contains("[never]") {
            return dlp_skip::skip(
                dlp_skip::kind::HUGE_PAGES,
                &format!("this kernel has no transparent huge pages ({thp:?})"),
                None,
            );
        }
        let v: Vec<u8> = (0..12 << 20).map(|i| (i % 251) as u8).collect();
        match collapse(&v) {
            Advice::Taken => {}
            Advice::Refused(e) if e == libc::EINVAL => {
                return dlp_skip::skip(
                    dlp_skip::kind::HUGE_PAGES,
                    "this kernel has no MADV_COLLAPSE (EINVAL)",
                    None,
                );
            }
            Advice::Refused(e) if e == libc::EAGAIN || e == libc::ENOMEM => {
                dlp_skip::skip(
                    dlp_skip::kind::HUGE_PAGES,
                    &format!("the kernel found no free huge page just now (errno {e})"),
                    None,
                );
                return;
            }
            other => panic!("collapse of a 12 MiB buffer: {other:?}"),
        }
        let kb = huge_kb_at(v.as_ptr() as usize + (6 << 20)).expect("the buffer's mapping");
        assert!(kb >= 2 << 10, "only {kb} kB of huge pages after collapse");
        assert!(v.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8));
    }

    #[test]
    fn tiny_ranges_ask_nothing() {
        let v = vec![1u8; 4096];
        assert_eq!(advise_lazy(&v), Advice::TooSmall);
    }
}
