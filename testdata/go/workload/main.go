// Command workload is gprof's test target: it leaks goroutines, churns short-lived ones,
// forces GC cycles, and prints its own runtime figures as JSON lines so that tests can
// compare them with what gprof measures from outside.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

var (
	leakRate  = flag.Float64("leak-rate", 20, "goroutines leaked per second (they block forever)")
	churnRate = flag.Float64("churn-rate", 2000, "short-lived goroutines started per second")
	gcEvery   = flag.Duration("gc-every", 2*time.Second, "force a GC cycle this often (0: never)")
	report    = flag.Duration("report", 100*time.Millisecond, "print the runtime's own figures this often (0: never)")
	duration  = flag.Duration("duration", 0, "stop after this long (0: run until killed)")
	depth     = flag.Int("depth", 0, "recursion depth of each short-lived goroutine (grows its stack)")
	tasks     = flag.Int64("tasks", 0, "stop after this many short-lived goroutines have finished")
	parked    = flag.Int("parked", 0, "goroutines started at once that wait for the whole run (a service's steady state)")
	execPath  = flag.String("exec", "", "after -duration or on SIGUSR1, replace this program with that one (same PID), run with -report 0")
)

// Counters of the goroutines this program started itself.
var (
	leaked   atomic.Int64
	churned  atomic.Int64
	finished atomic.Int64
	checksum atomic.Uint64
	stopping atomic.Bool
	// Set by cgo.go in cgo builds.
	cgoCall func() int64
	never   = make(chan struct{})
)

// sample is one report line; field names are what the gprof tests read.
type sample struct {
	Unix             float64 `json:"unix"`
	NumGoroutine     int     `json:"num_goroutine"`
	Leaked           int64   `json:"leaked"`
	Churned          int64   `json:"churned"`
	Finished         int64   `json:"finished"`
	NumGC            int64   `json:"num_gc"`
	PauseTotalNs     int64   `json:"pause_total_ns"`
	LastPauseNs      int64   `json:"last_pause_ns"`
	CreatedMetric    *uint64 `json:"created_metric,omitempty"`
	GoroutinesMetric *uint64 `json:"goroutines_metric,omitempty"`
}

func main() {
	flag.Parse()
	fmt.Fprintf(os.Stderr, "workload: pid %d, %s\n", os.Getpid(), runtime.Version())

	for i := 0; i < *parked; i++ {
		go leak()
	}
	start := time.Now()
	var wg sync.WaitGroup
	if *leakRate > 0 {
		go spawn(*leakRate, 0, start, func() { leaked.Add(1); go leak() })
	}
	churnDone := make(chan struct{})
	if *churnRate > 0 {
		go func() {
			defer close(churnDone)
			spawn(*churnRate, *tasks, start, func() {
				n := churned.Add(1)
				wg.Add(1)
				go shortLived(uint64(n), &wg)
			})
		}()
	} else {
		close(churnDone)
	}
	if cgoCall != nil {
		go func() {
			for range time.Tick(100 * time.Millisecond) {
				cgoCall()
			}
		}()
	}
	if *gcEvery > 0 {
		go func() {
			for range time.Tick(*gcEvery) {
				runtime.GC()
			}
		}()
	}
	if *report > 0 {
		go func() {
			enc := json.NewEncoder(os.Stdout)
			for range time.Tick(*report) {
				_ = enc.Encode(readSample())
			}
		}()
	}

	// SIGTERM ends the run like -duration: spawning stops, the short-lived goroutines finish
	// and the final line is printed.
	terminated := make(chan os.Signal, 1)
	signal.Notify(terminated, syscall.SIGTERM)
	if *execPath != "" {
		signal.Notify(terminated, syscall.SIGUSR1)
	}
	for {
		time.Sleep(10 * time.Millisecond)
		if *duration > 0 && time.Since(start) >= *duration {
			break
		}
		if len(terminated) > 0 {
			break
		}
		if *tasks > 0 && finished.Load() >= *tasks {
			break
		}
	}
	if *execPath != "" {
		err := syscall.Exec(*execPath, []string{*execPath, "-report", "0"}, os.Environ())
		fmt.Fprintf(os.Stderr, "workload: exec %s: %v\n", *execPath, err)
		os.Exit(1)
	}
	stopping.Store(true)
	<-churnDone
	wg.Wait()
	fmt.Printf("{\"done\":true,\"finished\":%d,\"checksum\":%d}\n", finished.Load(), checksum.Load())
}

// spawn calls start rate times per second (at most limit times when limit > 0), catching
// up after scheduling delays so that the totals follow rate*elapsed exactly.
func spawn(rate float64, limit int64, begin time.Time, start func()) {
	var done int64
	for range time.Tick(time.Millisecond) {
		due := int64(time.Since(begin).Seconds() * rate)
		if limit > 0 && due > limit {
			due = limit
		}
		for ; done < due && !stopping.Load(); done++ {
			start()
		}
		if stopping.Load() || (limit > 0 && done >= limit) {
			return
		}
	}
}

func leak() { <-never }

func shortLived(n uint64, wg *sync.WaitGroup) {
	defer wg.Done()
	checksum.Add(work(n, *depth))
	finished.Add(1)
}

// work recurses depth times so that the goroutine's stack grows; the result is deterministic.
func work(n uint64, depth int) uint64 {
	var pad [64]byte
	pad[n%64] = byte(n)
	if depth > 0 {
		return work(n*6364136223846793005+1442695040888963407, depth-1) + uint64(pad[n%64])
	}
	return n ^ (n >> 29)
}

func readSample() sample {
	var gc debug.GCStats
	debug.ReadGCStats(&gc)
	s := sample{
		Unix:         float64(time.Now().UnixNano()) / 1e9,
		NumGoroutine: runtime.NumGoroutine(),
		Leaked:       leaked.Load(),
		Churned:      churned.Load(),
		Finished:     finished.Load(),
		NumGC:        gc.NumGC,
		PauseTotalNs: int64(gc.PauseTotal),
	}
	if len(gc.Pause) > 0 {
		s.LastPauseNs = int64(gc.Pause[0])
	}
	s.CreatedMetric = readUint("/sched/goroutines-created:goroutines")
	s.GoroutinesMetric = readUint("/sched/goroutines:goroutines")
	return s
}

// readUint reads one runtime/metrics counter, or nil where this Go release lacks it.
func readUint(name string) *uint64 {
	m := []metrics.Sample{{Name: name}}
	metrics.Read(m)
	if m[0].Value.Kind() != metrics.KindUint64 {
		return nil
	}
	v := m[0].Value.Uint64()
	return &v
}
