// stacks parks goroutines in the shapes a goroutine dump must show: channel, select, mutex,
// WaitGroup, sleep, a system call, inlined calls, a generic function, a method value, a
// goroutine locked to its thread, one deep in recursion (past the traceback's elision),
// goroutines started by goroutines, and functions started with arguments (through the
// compiler's wrapper). It prints "ready" when they all wait, then sits idle
// (for `gprof dump` and then the runtime's own SIGQUIT dump of the same state). With -out
// DIR, SIGUSR1 writes the runtime's own dumps of the moment there: DIR/stack.txt
// (runtime.Stack of all goroutines, as debug=2 serves it) and DIR/goroutine.pb.gz (the
// goroutine profile), then DIR/done. With -gc, two GCs run before "ready": they stamp every
// waiting goroutine's waitsince, which dumps show as "N minutes" once a minute has passed.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"sync"
	"syscall"
	"time"
)

// dumpOnSignal writes the runtime's dumps into dir at each SIGUSR1.
func dumpOnSignal(dir string) {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGUSR1)
	for range c {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		os.WriteFile(filepath.Join(dir, "stack.txt"), buf, 0o644)
		f, err := os.Create(filepath.Join(dir, "goroutine.pb.gz"))
		if err == nil {
			pprof.Lookup("goroutine").WriteTo(f, 0)
			f.Close()
		}
		os.WriteFile(filepath.Join(dir, "done"), nil, 0o644)
	}
}

var (
	never = make(chan int)
	mu    sync.Mutex
	wg    sync.WaitGroup
	ready sync.WaitGroup
)

//go:noinline
func recvForever() { <-never }

func inlinedWait() { <-never } // small: inlined into its callers

//go:noinline
func callsInlined() { inlinedWait() }

//go:noinline
func selectForever(t *time.Ticker) {
	for {
		select {
		case <-never:
		case <-t.C:
			if len(never) > 0 {
				return
			}
		}
	}
}

//go:noinline
func lockForever() {
	mu.Lock()
	mu.Unlock()
}

//go:noinline
func recurse(n int) int {
	if n == 0 {
		<-never
		return 0
	}
	return recurse(n-1) + 1
}

type Box[T any] struct{ v T }

//go:noinline
func (b *Box[T]) Wait() T {
	<-never
	return b.v
}

//go:noinline
func waitGeneric[T any](v T) T {
	b := &Box[T]{v}
	return b.Wait()
}

// moverRecurse takes about 512 bytes of stack per level and waits at the bottom: a mover's
// stack grows (the runtime copies it elsewhere) and is shrunk by the GC while dumps read it.
//
//go:noinline
func moverRecurse(n int, ping chan int, first bool) int {
	var pad [448]byte
	pad[n%len(pad)] = byte(n)
	if n == 0 {
		if first {
			ping <- 1
			<-ping
		} else {
			<-ping
			ping <- 1
		}
		return int(pad[0])
	}
	return moverRecurse(n-1, ping, first) + int(pad[(n*7)%len(pad)])
}

// mover recurses to a new depth each time, waiting at the bottom for its partner.
//
//go:noinline
func mover(seed int, ping chan int) {
	for i := 0; ; i++ {
		moverRecurse((seed*31+i*17)%300, ping, seed%2 == 0)
	}
}

type waiter struct{ name string }

//go:noinline
func (w waiter) wait() { <-never }

//go:noinline
func (w *waiter) waitWith(n int) {
	if n > 100 {
		return
	}
	<-never
}

// parkWith is started with arguments: the go statement compiles to a wrapper (F.gowrapN since
// Go 1.22, a closure before) that calls it.
//
//go:noinline
func parkWith(n int, s string) {
	if n > len(s)+100 {
		return
	}
	<-never
}

func main() {
	out := flag.String("out", "", "where SIGUSR1 writes the runtime's own dumps")
	movers := flag.Int("movers", 0, "pairs of goroutines that recurse to new depths and wait at the bottom for each other, their stacks moving (with a GC every 10 ms that shrinks them)")
	gc := flag.Bool("gc", false, "run two GCs once every goroutine waits (it dates their waits: a dump a minute later shows \"1 minutes\")")
	flag.Parse()
	extra := 0
	if *out != "" {
		go dumpOnSignal(*out)
		extra = 2 // it and os/signal's loop
	}
	mu.Lock()
	wg.Add(1)
	ticker := time.NewTicker(time.Hour)
	r, w, err := os.Pipe()
	if err != nil {
		panic(err)
	}
	defer w.Close()
	starts := []func(){
		recvForever,
		callsInlined,
		func() { selectForever(ticker) },
		lockForever,
		func() { wg.Wait() },
		func() { time.Sleep(time.Hour) },
		func() { recurse(150) },
		func() { waitGeneric[string]("x") },
		func() { waitGeneric[int](1) },
		waiter{"m"}.wait,
		func() {
			runtime.LockOSThread()
			<-never
		},
		func() {
			buf := make([]byte, 1)
			r.Read(buf) // blocks in the netpoller (a pipe is non-blocking in Go)
		},
		func() {
			// A goroutine started by a goroutine.
			go recvForever()
			<-never
		},
	}
	for _, f := range starts {
		go f()
	}
	go parkWith(3, "x")
	go (&waiter{"p"}).waitWith(2)
	// Let every goroutine reach its wait.
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() < len(starts)+4+extra && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	for i := 0; i < *movers; i++ {
		ping := make(chan int)
		go mover(2*i, ping)
		go mover(2*i+1, ping)
	}
	if *movers > 0 {
		go func() {
			for range time.Tick(10 * time.Millisecond) {
				runtime.GC()
			}
		}()
	}
	if *gc {
		// Each GC stamps the waits it finds with the previous cycle's start (0 before the
		// first cycle ends): two stamp them.
		runtime.GC()
		runtime.GC()
	}
	fmt.Println("ready", runtime.NumGoroutine())
	for {
		time.Sleep(time.Hour)
	}
}
