// Command churn is gprof's worst case: goroutines with nearly empty bodies, created as fast
// as the runtime can, so that the cost of a probe on creation and exit shows in full. It
// starts -n goroutines, or as many as it can in -seconds. With -wait it starts only after
// reading a line on stdin, so that a profiler can attach first; with -hold it stays (with
// its -leak goroutines) until stdin closes, so that the profiler can read the end state.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	n := flag.Int("n", 2_000_000, "goroutines to start (when -seconds is 0)")
	seconds := flag.Float64("seconds", 0, "start goroutines for this long instead")
	spawners := flag.Int("spawners", runtime.GOMAXPROCS(0), "goroutines that start them")
	wait := flag.Bool("wait", false, "start after reading a line on stdin")
	hold := flag.Bool("hold", false, "after the report, stay until stdin closes")
	leak := flag.Int64("leak", 0, "goroutines that block until the end (one in 100 of the first started)")
	flag.Parse()
	stdin := bufio.NewReader(os.Stdin)
	if *wait {
		_, _ = stdin.ReadString('\n')
	}
	never := make(chan struct{})

	var sum, leaked atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(time.Duration(*seconds * float64(time.Second)))
	per := *n / *spawners
	for s := 0; s < *spawners; s++ {
		wg.Add(1)
		go func(s int) {
			defer wg.Done()
			var inner sync.WaitGroup
			for i := 0; *seconds > 0 || i < per; i++ {
				// Duration mode: look at the clock once per 1000 goroutines.
				if *seconds > 0 && i%1000 == 0 && time.Now().After(deadline) {
					break
				}
				if s == 0 && i%100 == 0 && leaked.Load() < *leak {
					leaked.Add(1)
					go func() { <-never }()
					continue
				}
				inner.Add(1)
				go func() {
					sum.Add(1)
					inner.Done()
				}()
			}
			inner.Wait()
		}(s)
	}
	wg.Wait()
	elapsed := time.Since(start).Seconds()
	_ = json.NewEncoder(os.Stdout).Encode(map[string]any{
		"goroutines":    sum.Load() + leaked.Load(),
		"leaked":        leaked.Load(),
		"spawners":      *spawners,
		"num_goroutine": runtime.NumGoroutine(),
		"seconds":       elapsed,
		"version":       runtime.Version(),
	})
	if *hold {
		_, _ = stdin.ReadString('\n')
	}
}
