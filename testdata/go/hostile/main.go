// Command hostile is a tenant that lies to gprof: it parks goroutines like an honest service,
// waits for SIGUSR1, then rewrites its own runtime's bookkeeping (or floods what the kernel
// side keeps for it) and sits idle, so that a test can check that gprof reports none of it
// as fact, unwatches it, and stays within its own bounds.
//
// It writes the runtime's internals at Go 1.27's offsets (linux/amd64 and arm64): it refuses
// other releases. Reading and writing runtime.allgs needs -ldflags=-checklinkname=0.
//
// Attacks (-attack):
//
//	allglen     runtime.allglen set to 2^31 over the real array
//	duplicates  runtime.allgs replaced by 4,000,000 pointers to one real g (allglen with it)
//	random      runtime.allgs replaced by 200,000 pointers into random bytes (allglen with it)
//	goidclash   every parked goroutine's goid set to 7
//	stacks      every parked goroutine's stack bounds reversed
//	sites       goroutines exit with forged creation sites (g.gopc anywhere in the text):
//	            a flood of distinct sites for the kernel's site map
//	gcflood     runtime.GC() in a loop on every P: a flood of pause and cycle records
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand"
	"os"
	"os/signal"
	"reflect"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"
)

//go:linkname allgs runtime.allgs
var allgs []unsafe.Pointer

//go:linkname allglen runtime.allglen
var allglen uintptr

// Go 1.27's struct g (linux, default GOEXPERIMENTs).
const (
	gStackLo = 0x0
	gStackHi = 0x8
	gStatus  = 0x90
	gGoid    = 0x98
	gGopc    = 0x120
	gStartpc = 0x130
	waiting  = 4
)

var never = make(chan struct{})

//go:noinline
func parked() { <-never }

func u64(p unsafe.Pointer, off uintptr) *uint64 { return (*uint64)(unsafe.Add(p, off)) }

// parkedGs: the gs of the goroutines `fn` started that are waiting now.
func gsOf(fn func()) []unsafe.Pointer {
	pc := uint64(reflect.ValueOf(fn).Pointer())
	var out []unsafe.Pointer
	for _, g := range allgs[:atomic.LoadUintptr(&allglen)] {
		if *u64(g, gStartpc) == pc && *(*uint32)(unsafe.Add(g, gStatus)) == waiting {
			out = append(out, g)
		}
	}
	return out
}

// text is the program's executable mapping, from /proc/self/maps.
func text() (uint64, uint64) {
	exe, _ := os.Readlink("/proc/self/exe")
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		panic(err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) >= 6 && strings.Contains(fields[1], "x") && fields[5] == exe {
			r := strings.SplitN(fields[0], "-", 2)
			lo, _ := strconv.ParseUint(r[0], 16, 64)
			hi, _ := strconv.ParseUint(r[1], 16, 64)
			return lo, hi
		}
	}
	panic("no executable mapping")
}

var gate chan struct{}

//go:noinline
func flooder() { <-gate }

func floodSites(seconds float64) {
	lo, hi := text()
	end := time.Now().Add(time.Duration(seconds * float64(time.Second)))
	for time.Now().Before(end) {
		gate = make(chan struct{})
		for i := 0; i < 2000; i++ {
			go flooder()
		}
		time.Sleep(10 * time.Millisecond)
		for _, g := range gsOf(flooder) {
			*u64(g, gGopc) = lo + uint64(rand.Int63n(int64(hi-lo)))
		}
		close(gate)
		time.Sleep(40 * time.Millisecond)
	}
}

func main() {
	attack := flag.String("attack", "allglen", "allglen | duplicates | random | goidclash | stacks | sites | gcflood")
	n := flag.Int("parked", 1000, "goroutines parked like an honest service's")
	seconds := flag.Float64("seconds", 60, "sites, gcflood: how long the flood lasts")
	flag.Parse()
	if !strings.HasPrefix(runtime.Version(), "go1.27") {
		fmt.Fprintf(os.Stderr, "hostile writes Go 1.27's struct offsets; this is %s\n", runtime.Version())
		os.Exit(2)
	}
	// No GC: it would walk the forged gs.
	debug.SetGCPercent(-1)
	for i := 0; i < *n; i++ {
		go parked()
	}
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	enc := json.NewEncoder(os.Stdout)
	time.Sleep(100 * time.Millisecond)
	enc.Encode(map[string]any{"phase": "ready", "num_goroutine": runtime.NumGoroutine()})
	<-usr1
	switch *attack {
	case "allglen":
		atomic.StoreUintptr(&allglen, 1<<31)
	case "duplicates":
		fake := make([]unsafe.Pointer, 4_000_000)
		for i := range fake {
			fake[i] = allgs[0]
		}
		allgs = fake
		atomic.StoreUintptr(&allglen, uintptr(len(fake)))
	case "random":
		const count, size = 200_000, 512
		buf := make([]byte, count*size)
		rand.Read(buf)
		fake := make([]unsafe.Pointer, count)
		for i := range fake {
			fake[i] = unsafe.Pointer(&buf[i*size])
		}
		allgs = fake
		atomic.StoreUintptr(&allglen, count)
	case "goidclash":
		for _, g := range gsOf(parked) {
			*u64(g, gGoid) = 7
		}
	case "stacks":
		for _, g := range gsOf(parked) {
			lo, hi := *u64(g, gStackLo), *u64(g, gStackHi)
			*u64(g, gStackLo), *u64(g, gStackHi) = hi, lo
		}
	case "sites":
		go floodSites(*seconds)
	case "gcflood":
		for p := 0; p < runtime.GOMAXPROCS(0); p++ {
			go func() {
				for end := time.Now().Add(time.Duration(*seconds * float64(time.Second))); time.Now().Before(end); {
					runtime.GC()
				}
			}()
		}
	default:
		fmt.Fprintf(os.Stderr, "unknown attack %q\n", *attack)
		os.Exit(2)
	}
	enc.Encode(map[string]any{"phase": "attacked", "attack": *attack, "allglen": atomic.LoadUintptr(&allglen), "allgs": len(allgs), "num_goroutine": runtime.NumGoroutine()})
	// Idle until stdin closes: a read that blocks in a system call keeps an M busy, so the
	// runtime's deadlock check never walks the forged gs.
	os.Stdin.Read(make([]byte, 1))
}
