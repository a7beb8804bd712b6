// Command leaksites leaks goroutines at two known `go` statements at different rates, beside
// a site of short-lived goroutines that leaks nothing. It prints, every -report, the
// position (file:line, found with runtime.Caller on the statement's own line) and the
// goroutines leaked so far at each site, with runtime.NumGoroutine(), so that a test can
// check which site gprof names and at what rate.
package main

import (
	"encoding/json"
	"flag"
	"os"
	"runtime"
	"sync/atomic"
	"time"
)

type site struct {
	File   string `json:"file"`
	Line   int    `json:"line"`
	Leaked int64  `json:"leaked"`
}

var never = make(chan struct{})

func blockForever() { <-never }

func shortLived(done *atomic.Int64) { done.Add(1) }

// leakFast and leakSlow hold the two leaking `go` statements; each reports its own line.
func leakFast(s *site) {
	go blockForever(); _, s.File, s.Line, _ = runtime.Caller(0)
}

func leakSlow(s *site) {
	go blockForever(); _, s.File, s.Line, _ = runtime.Caller(0)
}

func churn(s *site, done *atomic.Int64) {
	go shortLived(done); _, s.File, s.Line, _ = runtime.Caller(0)
}

// every calls f n times per second, evenly.
func every(n int, f func()) {
	tick := time.NewTicker(time.Second / time.Duration(n))
	for range tick.C {
		f()
	}
}

func main() {
	fast := flag.Int("fast", 20, "goroutines leaked per second at the fast site")
	slow := flag.Int("slow", 5, "goroutines leaked per second at the slow site")
	churnRate := flag.Int("churn", 500, "short-lived goroutines per second")
	report := flag.Duration("report", time.Second, "how often to print the figures")
	flag.Parse()

	var sites struct {
		Fast, Slow, Churn site
	}
	var fastN, slowN, churned atomic.Int64
	var lock = make(chan struct{}, 1)
	lock <- struct{}{}
	go every(*fast, func() {
		<-lock
		leakFast(&sites.Fast)
		lock <- struct{}{}
		fastN.Add(1)
	})
	go every(*slow, func() {
		<-lock
		leakSlow(&sites.Slow)
		lock <- struct{}{}
		slowN.Add(1)
	})
	go every(*churnRate/10, func() {
		<-lock
		for i := 0; i < 10; i++ {
			churn(&sites.Churn, &churned)
		}
		lock <- struct{}{}
	})
	out := json.NewEncoder(os.Stdout)
	for range time.Tick(*report) {
		<-lock
		f, s, c := sites.Fast, sites.Slow, sites.Churn
		lock <- struct{}{}
		f.Leaked, s.Leaked = fastN.Load(), slowN.Load()
		_ = out.Encode(map[string]any{
			"unix":          float64(time.Now().UnixNano()) / 1e9,
			"num_goroutine": runtime.NumGoroutine(),
			"fast":          f,
			"slow":          s,
			"churn":         c,
			"churned":       churned.Load(),
		})
	}
}
