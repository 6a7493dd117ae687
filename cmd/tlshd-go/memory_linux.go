package main

import (
	"bufio"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// tuneMemory keeps the heap small: a handshake allocates tens of
// kilobytes, so the default GC target (a 4 MiB minimum heap, then 100 %
// growth) would let garbage outweigh live data many times over. The soft
// limit grows with the concurrency bound. GOGC and GOMEMLIMIT in the
// environment take precedence.
func tuneMemory(maxConcurrent int) {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(25)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(int64(8<<20 + maxConcurrent*64<<10))
	}
}

// tuneScheduler gives Go one P more than CPUs: the accept thread keeps a
// P while it waits for READY (genl's recvTimeout), and handshakes keep
// one per CPU. GOMAXPROCS in the environment takes precedence.
func tuneScheduler() {
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(runtime.NumCPU() + 1)
	}
}

// noHugePages makes sure the process runs without transparent huge
// pages, re-executing itself once if they were on. With THP "always"
// (Debian's default) the first touch of each 2 MiB-aligned part of Go's
// heap arena takes a whole huge page: a daemon whose live heap is a
// megabyte or two then holds 6 MiB or more. The setting is inherited
// across execve, so the new image is clean from its first allocation;
// systemd sees the same PID.
func noHugePages() {
	if unix.Gettid() != unix.Getpid() {
		// Not on the first thread (main's init lock is missing): an
		// execve here would show the daemon as a zombie while it runs.
		return
	}
	disabled, err := unix.PrctlRetInt(unix.PR_GET_THP_DISABLE, 0, 0, 0, 0)
	if err != nil || disabled == 1 {
		return
	}
	if err := unix.Prctl(unix.PR_SET_THP_DISABLE, 1, 0, 0, 0); err != nil {
		return
	}
	if exe, err := os.Executable(); err == nil {
		unix.Exec(exe, os.Args, os.Environ()) // returns only on failure
	}
}

// releaseStartupPages unmaps the pages of the executable's code and
// read-only data that start-up touched (package initialisers, flag and
// policy parsing) and serving will not: they are clean copies of the file,
// so they stay in the page cache and come back on a minor fault if used.
// Without this the kernel's fault-around leaves most of the binary mapped
// for the daemon's lifetime.
//
// Only mappings without private dirty or anonymous pages qualify: in a
// position-independent executable the RELRO segment (relocated pointers,
// mprotected read-only after relocation) is r--p too, and MADV_DONTNEED
// would drop the relocations and bring back the file's unrelocated bytes
// (the daemon then crashed in the garbage collector).
func releaseStartupPages() {
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return
	}
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		return
	}
	defer f.Close()
	type mapping struct {
		start, end uint64
		dirty      bool
	}
	var maps []mapping
	cur := -1 // index in maps of the exe mapping being read, or -1
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 {
			continue
		}
		if strings.HasSuffix(fields[0], ":") {
			// "Private_Dirty:     4 kB", "Anonymous:     0 kB"
			if cur >= 0 && len(fields) >= 2 && fields[1] != "0" &&
				(fields[0] == "Private_Dirty:" || fields[0] == "Anonymous:") {
				maps[cur].dirty = true
			}
			continue
		}
		// "00400000-00784000 r-xp 00000000 fe:01 1234  /usr/sbin/tlshd-go"
		cur = -1
		if len(fields) < 6 || fields[5] != exe || (fields[1] != "r-xp" && fields[1] != "r--p") {
			continue
		}
		lo, hi, ok := strings.Cut(fields[0], "-")
		if !ok {
			continue
		}
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 != nil || err2 != nil || end <= start {
			continue
		}
		maps = append(maps, mapping{start: start, end: end})
		cur = len(maps) - 1
	}
	if sc.Err() != nil {
		return // a partial read could miss a mapping's dirty pages
	}
	for _, m := range maps {
		if !m.dirty {
			unix.Syscall(unix.SYS_MADVISE, uintptr(m.start), uintptr(m.end-m.start), unix.MADV_DONTNEED)
		}
	}
}
