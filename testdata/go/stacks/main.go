// stacks parks goroutines in the shapes a goroutine dump must show: channel, select, mutex,
// WaitGroup, sleep, a system call, inlined calls, a generic function, a method value, a
// goroutine locked to its thread, one deep in recursion (past the traceback's elision), and
// goroutines started by goroutines. It prints "ready" when they all wait, then sits idle
// (for `gprof dump` and then the runtime's own SIGQUIT dump of the same state).
package main

import (
	"fmt"
	"os"
	"runtime"
	"sync"
	"time"
)

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

type waiter struct{ name string }

//go:noinline
func (w waiter) wait() { <-never }

func main() {
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
	// Let every goroutine reach its wait.
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() < len(starts)+2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	fmt.Println("ready", runtime.NumGoroutine())
	for {
		time.Sleep(time.Hour)
	}
}
