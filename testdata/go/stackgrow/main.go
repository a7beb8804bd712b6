// Command stackgrow makes goroutines whose stacks grow: -parked of them recurse deeply and
// then block (live goroutines holding large stacks), then, after a line on stdin, -batches
// of -n short-lived goroutines recurse as deeply and exit (their gs go to the free pool).
// After two GCs it prints the runtime's own stack figures and waits until stdin closes.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"os"
	"runtime"
	"runtime/metrics"
	"sync"
)

var sink byte

// recurse uses about 1 KiB of stack per level.
//
//go:noinline
func recurse(n int) byte {
	var buf [1000]byte
	buf[n%len(buf)] = byte(n)
	if n == 0 {
		return buf[0]
	}
	return recurse(n-1) + buf[(n*7)%len(buf)]
}

func main() {
	parked := flag.Int("parked", 100, "goroutines that recurse, then block")
	n := flag.Int("n", 500, "short-lived goroutines per batch")
	batches := flag.Int("batches", 20, "batches of short-lived goroutines")
	depth := flag.Int("depth", 40, "recursion depth (about 1 KiB of stack per level)")
	flag.Parse()

	block := make(chan struct{})
	var ready sync.WaitGroup
	for i := 0; i < *parked; i++ {
		ready.Add(1)
		go func() {
			sink += recurse(*depth)
			ready.Done()
			<-block
		}()
	}
	ready.Wait()
	stdin := bufio.NewReader(os.Stdin)
	_, _ = stdin.ReadString('\n')

	for b := 0; b < *batches; b++ {
		var wg sync.WaitGroup
		for i := 0; i < *n; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				sink += recurse(*depth)
			}()
		}
		wg.Wait()
	}
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	m := []metrics.Sample{{Name: "/memory/classes/heap/stacks:bytes"}}
	metrics.Read(m)
	_ = json.NewEncoder(os.Stdout).Encode(map[string]any{
		"short_lived":        *n * *batches,
		"parked":             *parked,
		"num_goroutine":      runtime.NumGoroutine(),
		"stack_inuse":        ms.StackInuse,
		"heap_stacks_metric": m[0].Value.Uint64(),
	})
	_, _ = stdin.ReadString('\n')
	close(block)
}
