// Command crowd parks many goroutines for good at three sites (a channel receive, a mutex,
// a WaitGroup), then sits idle: the census at scale. It prints one JSON line when every
// goroutine has parked (with the time, so that a test knows when each one blocked at the
// latest) and then one every -report with the runtime's own count.
package main

import (
	"encoding/json"
	"flag"
	"os"
	"runtime"
	"sync"
	"time"
)

var (
	never = make(chan struct{})
	held  sync.Mutex
	wait  sync.WaitGroup
)

//go:noinline
func parkRecv(started *sync.WaitGroup) {
	started.Done()
	<-never
}

//go:noinline
func parkLock(started *sync.WaitGroup) {
	started.Done()
	held.Lock()
}

//go:noinline
func parkWait(started *sync.WaitGroup) {
	started.Done()
	wait.Wait()
}

type report struct {
	Unix         float64 `json:"unix"`
	Phase        string  `json:"phase"`
	Parked       int     `json:"parked"`
	NumGoroutine int     `json:"num_goroutine"`
	// Every parked goroutine had blocked by this time (seconds since the epoch).
	ParkedBy float64 `json:"parked_by"`
}

func now() float64 { return float64(time.Now().UnixNano()) / 1e9 }

func main() {
	n := flag.Int("n", 1_000_000, "goroutines to park (spread over the three sites)")
	every := flag.Duration("report", 10*time.Second, "print the runtime's count this often (0: once)")
	flag.Parse()
	held.Lock()
	wait.Add(1)
	var started sync.WaitGroup
	started.Add(*n)
	for i := 0; i < *n; i++ {
		switch i % 3 {
		case 0:
			go parkRecv(&started)
		case 1:
			go parkLock(&started)
		default:
			go parkWait(&started)
		}
	}
	started.Wait()
	// Done() comes just before each one blocks: a moment later they all have.
	time.Sleep(100 * time.Millisecond)
	by := now()
	enc := json.NewEncoder(os.Stdout)
	out := func(phase string) {
		enc.Encode(report{Unix: now(), Phase: phase, Parked: *n, NumGoroutine: runtime.NumGoroutine(), ParkedBy: by})
	}
	out("parked")
	if *every <= 0 {
		// A sleeping timer, not select{}: with every goroutine parked the runtime would call
		// it a deadlock.
		for {
			time.Sleep(time.Hour)
		}
	}
	for range time.Tick(*every) {
		out("idle")
	}
}
