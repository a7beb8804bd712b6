// The driver of GoBench's GoKer kernels (Go's src/runtime/testdata/testgoroutineleakprofile/goker,
// copied next to this file at build time, their own main.go left out): it runs one kernel as
// recurring traffic, a fresh instance every -every for as long as it lives, so that a leak
// piles up as a service's would. The kernels write the goroutineleak profile when they end;
// the build rewrites those writes into kernelDone, so the runtime marks nothing leaked unless
// -profile asks for the profile itself.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"sort"
	"syscall"
	"time"
)

// The number of times a kernel's main goroutine yields to let its leaking goroutines block
// (as the suite's own main.go has it).
const yieldCount = 10

var cmds = map[string]func(){}

func register(name string, f func()) {
	if cmds[name] != nil {
		panic("duplicate registration: " + name)
	}
	cmds[name] = f
}

func registerInit(name string, f func()) {
	if len(os.Args) >= 2 && os.Args[1] == name {
		f()
	}
}

// cpuSeconds is the CPU time the process has used.
func cpuSeconds() float64 {
	var u syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &u) != nil {
		return 0
	}
	return float64(u.Utime.Nano()+u.Stime.Nano()) / 1e9
}

// kernelDone stands for a kernel's own `prof.WriteTo(os.Stdout, 2)`: nothing is written.
func kernelDone(*pprof.Profile, io.Writer) {}

func main() {
	every := flag.Duration("every", time.Second, "start a fresh instance of the kernel this often")
	profile := flag.Duration("profile", 0, "request the goroutineleak profile this often (0: never; the runtime then marks the leaks it finds)")
	out := flag.String("out", "", "with -profile, write each profile (debug=2) to DIR/leaks.txt")
	list := flag.Bool("list", false, "list the kernels")
	maxGrowth := flag.Float64("max-growth", 0, "start no instance while the live goroutines exceed the first count by more than this many per second of the run (0: no limit): a prolific leak grows steadily instead of filling the memory")
	cpuShare := flag.Float64("cpu", 0, "start no instance while the process has used more than this share of a core since it started (0: no limit): an expensive kernel runs less often")
	flag.Parse()
	if *list {
		names := make([]string, 0, len(cmds))
		for n := range cmds {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			fmt.Println(n)
		}
		return
	}
	if flag.NArg() != 1 || cmds[flag.Arg(0)] == nil {
		fmt.Fprintln(os.Stderr, "usage: goker [-every D] [-profile D -out DIR] KERNEL (-list lists them)")
		os.Exit(2)
	}
	kernel := cmds[flag.Arg(0)]
	if *profile > 0 {
		go func() {
			for range time.Tick(*profile) {
				tmp := filepath.Join(*out, "leaks.txt.tmp")
				f, err := os.Create(tmp)
				if err != nil {
					continue
				}
				pprof.Lookup("goroutineleak").WriteTo(f, 2)
				f.Close()
				os.Rename(tmp, filepath.Join(*out, "leaks.txt"))
			}
		}()
	}
	start, base := time.Now(), runtime.NumGoroutine()
	allowed := func() bool {
		elapsed := time.Since(start).Seconds()
		if *maxGrowth > 0 && float64(runtime.NumGoroutine()-base) > *maxGrowth*elapsed {
			return false
		}
		return *cpuShare <= 0 || cpuSeconds() <= *cpuShare*elapsed
	}
	// Each instance in a goroutine of its own: one that never returns blocks no other. A
	// line per instance: how many were started, and the live goroutines then.
	for n := 1; ; n++ {
		go kernel()
		fmt.Println(n, runtime.NumGoroutine())
		time.Sleep(*every)
		for !allowed() {
			time.Sleep(100 * time.Millisecond)
		}
	}
}
