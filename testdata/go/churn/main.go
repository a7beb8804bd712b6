// Command churn is gprof's worst case: goroutines with nearly empty bodies, created as fast
// as the runtime can, so that the cost of a probe on creation and exit shows in full. With
// -wait it starts only after reading a line on stdin, so that a profiler can attach first.
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
	n := flag.Int("n", 2_000_000, "goroutines to start")
	spawners := flag.Int("spawners", runtime.GOMAXPROCS(0), "goroutines that start them")
	wait := flag.Bool("wait", false, "start after reading a line on stdin")
	flag.Parse()
	if *wait {
		_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
	}
	var sum atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	per := *n / *spawners
	for s := 0; s < *spawners; s++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var inner sync.WaitGroup
			for i := 0; i < per; i++ {
				inner.Add(1)
				go func() {
					sum.Add(1)
					inner.Done()
				}()
			}
			inner.Wait()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start).Seconds()
	_ = json.NewEncoder(os.Stdout).Encode(map[string]any{
		"goroutines": sum.Load(),
		"seconds":    elapsed,
		"version":    runtime.Version(),
	})
}
