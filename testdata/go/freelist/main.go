// Command freelist checks gprof's free-G pool size against the runtime. In rounds, it runs
// bursts of goroutines that exit (which fills the runtime's free lists) and parks a few, then
// holds a quiet checkpoint during which nothing starts or ends, and prints what
// runtime.gcount subtracts from allglen to get NumGoroutine: the free pool plus the system
// goroutines. From Go 1.26, runtime/metrics counts the system goroutines too
// (/sched/goroutines includes them), which gives the pool on its own.
//
// With -procs, each round first sets GOMAXPROCS to the next value of the list: the runtime
// then grows or shrinks allp (and moves the free lists of the Ps it retires), which gprof's
// readings must follow.
//
// Reading runtime.allglen needs -ldflags=-checklinkname=0 from Go 1.23.
package main

import (
	"encoding/json"
	"flag"
	"os"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"time"
	_ "unsafe" // go:linkname
)

//go:linkname allglen runtime.allglen
var allglen uintptr

var (
	rounds = flag.Int("rounds", 5, "rounds")
	burst  = flag.Int("burst", 3000, "goroutines started and finished per round")
	park   = flag.Int("park", 50, "goroutines parked for good per round")
	quiet  = flag.Duration("quiet", 3*time.Second, "how long each checkpoint stays quiet")
	procs  = flag.String("procs", "", "GOMAXPROCS for each round, comma-separated (cycled)")
	never  = make(chan struct{})
)

type checkpoint struct {
	Unix         float64 `json:"unix"`
	Round        int     `json:"round"`
	Allglen      int64   `json:"allglen"`
	NumGoroutine int     `json:"num_goroutine"`
	// allglen - NumGoroutine: the free pool plus the system goroutines.
	PoolPlusSystem int64 `json:"pool_plus_system"`
	// Only where runtime/metrics counts system goroutines (Go 1.26+).
	System *int64 `json:"system_goroutines,omitempty"`
	Pool   *int64 `json:"pool,omitempty"`
	Phase  string `json:"phase"`
	Procs  int    `json:"gomaxprocs"`
}

// withSystem reads /sched/goroutines, which counts system goroutines from Go 1.26.
func withSystem() (uint64, bool) {
	s := []metrics.Sample{{Name: "/sched/goroutines:goroutines"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0, false
	}
	return s[0].Value.Uint64(), true
}

func main() {
	flag.Parse()
	enc := json.NewEncoder(os.Stdout)
	var perRound []int
	for _, v := range strings.Split(*procs, ",") {
		if n, err := strconv.Atoi(v); err == nil && n > 0 {
			perRound = append(perRound, n)
		}
	}
	for r := 1; r <= *rounds; r++ {
		if len(perRound) > 0 {
			runtime.GOMAXPROCS(perRound[(r-1)%len(perRound)])
		}
		var wg sync.WaitGroup
		for i := 0; i < *burst; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				time.Sleep(time.Millisecond)
			}()
		}
		for i := 0; i < *park; i++ {
			go func() { <-never }()
		}
		wg.Wait()
		runtime.GC()
		time.Sleep(200 * time.Millisecond)
		user := runtime.NumGoroutine()
		c := checkpoint{
			Unix:           float64(time.Now().UnixNano()) / 1e9,
			Round:          r,
			Allglen:        int64(allglen),
			NumGoroutine:   user,
			PoolPlusSystem: int64(allglen) - int64(user),
			Phase:          "quiet",
			Procs:          runtime.GOMAXPROCS(0),
		}
		if all, ok := withSystem(); ok && runtime.Version() >= "go1.26" {
			system := int64(all) - int64(user)
			pool := c.PoolPlusSystem - system
			c.System, c.Pool = &system, &pool
		}
		_ = enc.Encode(c)
		time.Sleep(*quiet)
		c.Unix = float64(time.Now().UnixNano()) / 1e9
		c.Phase = "end"
		_ = enc.Encode(c)
	}
}
