// Command scenarios runs one goroutine-leak scenario (-scenario) and prints its own truth as a
// JSON line every -report: the goroutines it leaked on purpose so far (they never return), its
// live goroutines (runtime.NumGoroutine), and the source positions (runtime.Caller) of the
// statements that create and block them. gprof's leak verdict is checked against these.
//
// Leaks come from requests: a request starts a worker goroutine and waits for its result for
// a while; a small share of workers are too slow, their request gives up, and the worker
// blocks for ever on its send (or on a lock, a WaitGroup, a read) with nobody left to wake it.
// Load alternates between -high and -low requests per second every -period; everything that
// is not a leak comes and goes, or stays for good without growing.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand"
	"net"
	"os"
	"runtime"
	"runtime/pprof"
	"sync"
	"sync/atomic"
	"time"
)

// pos is a source position as runtime.Caller reports it.
type pos struct {
	File string `json:"file"`
	Line int    `json:"line"`
}

// where returns the caller's position, `below` lines further down.
func where(below int) pos {
	_, file, line, _ := runtime.Caller(1)
	return pos{file, line + below}
}

var (
	leaked    atomic.Int64
	requests  atomic.Int64
	positions = map[string]pos{}
	posMu     sync.Mutex
)

// record notes a position under `name` (the first time).
func record(name string, p pos) {
	posMu.Lock()
	if _, ok := positions[name]; !ok {
		positions[name] = p
	}
	posMu.Unlock()
}

// How a slow worker's leak blocks.
type leakKind int

const (
	leakSend leakKind = iota
	leakMutex
	leakWaitGroup
	leakRead
)

var (
	// Held for ever once the first worker leaks on it: later lockers wait for good.
	stuckMu   sync.Mutex
	stuckOnce sync.Once
	// Never released.
	neverDone sync.WaitGroup
	// A connection nobody writes to.
	silent net.Conn
)

// worker computes a result; a slow one is abandoned by its request and blocks for ever.
func worker(out chan<- int, work time.Duration, kind leakKind) {
	time.Sleep(work)
	switch kind {
	case leakSend:
		record("send", where(1))
		out <- 42
	case leakMutex:
		stuckOnce.Do(stuckMu.Lock)
		record("lock", where(1))
		stuckMu.Lock()
	case leakWaitGroup:
		record("wait", where(1))
		neverDone.Wait()
	case leakRead:
		buf := make([]byte, 1)
		record("read", where(1))
		silent.Read(buf)
	}
}

// request runs one request: a worker, waited for up to `patience`.
func request(slowShare float64, kind leakKind, patience time.Duration) {
	requests.Add(1)
	out := make(chan int)
	work := time.Duration(rand.Intn(3)+1) * time.Millisecond
	// Workers that are not slow answer in time; slow ones leak their own way.
	k := leakSend
	if rand.Float64() < slowShare {
		work, k = 4*patience, kind
	}
	record("go", where(1))
	go worker(out, work, k)
	select {
	case <-out:
	case <-time.After(patience):
		leaked.Add(1)
	}
}

// load starts `rate()` requests per second, spread evenly, until stopped.
func load(rate func() float64, slowShare func() float64, kind leakKind, patience time.Duration) {
	for {
		r := rate()
		if r <= 0 {
			time.Sleep(100 * time.Millisecond)
			continue
		}
		time.Sleep(time.Duration(float64(time.Second) / r))
		go request(slowShare(), kind, patience)
	}
}

// alternating is `high` for one half of each period and `low` for the other.
func alternating(start time.Time, high, low float64, period time.Duration) func() float64 {
	return func() float64 {
		if (time.Since(start)/(period/2))%2 == 0 {
			return high
		}
		return low
	}
}

// Client ends of the connections, kept so that no finalizer closes them.
var (
	clients   []net.Conn
	clientsMu sync.Mutex
)

// The loopback listener every connection goes to, started on first use.
var (
	listenOnce sync.Once
	listenAddr string
)

func listener() string {
	listenOnce.Do(func() {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			panic(err)
		}
		listenAddr = ln.Addr().String()
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				record("conn", where(1))
				go serveConn(c)
			}
		}()
	})
	return listenAddr
}

// openConns opens n loopback connections whose server side blocks reading (IO wait) until the
// connection closes after `life` (0: never).
func openConns(n int, life time.Duration) {
	for i := 0; i < n; i++ {
		c, err := net.Dial("tcp", listener())
		if err != nil {
			panic(err)
		}
		if life > 0 {
			time.AfterFunc(life, func() { c.Close() })
		} else {
			clientsMu.Lock()
			clients = append(clients, c)
			clientsMu.Unlock()
		}
	}
}

// keepOpen keeps one connection open at all times: each lives a random time between half and
// one and a half `life`, then the next one opens.
func keepOpen(life time.Duration) {
	lived := life/2 + time.Duration(rand.Int63n(int64(life)))
	openConns(1, lived)
	time.AfterFunc(lived, func() { keepOpen(life) })
}

func serveConn(c net.Conn) {
	io.Copy(io.Discard, c)
	c.Close()
}

// silentConn is a connection whose peer never writes.
func silentConn() net.Conn {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		panic(err)
	}
	return c
}

// tickers runs n goroutines that wake every `every` in a select with a timer, never stuck.
func tickers(n int, every time.Duration) {
	for i := 0; i < n; i++ {
		go func() {
			stop := make(chan struct{})
			for {
				select {
				case <-time.After(every):
				case <-stop:
					return
				}
			}
		}()
	}
}

// unreachable leaks a goroutine blocked on a channel nothing else can reach: what Go 1.26+'s
// goroutineleak profile proves leaked.
func unreachable() {
	ch := make(chan int)
	record("unreachable go", where(1))
	go func() {
		record("unreachable send", where(1))
		ch <- 1
	}()
	leaked.Add(1)
}

func main() {
	scenario := flag.String("scenario", "leak", "leak | loadstep | slowleak | leakstops | pool | conns | timers | mutex | waitgroup | ioleak | goleak")
	high := flag.Float64("high", 400, "requests per second in the busy half of a period")
	low := flag.Float64("low", 40, "requests per second in the quiet half")
	period := flag.Duration("period", 20*time.Second, "load alternates high and low within each period")
	share := flag.Float64("share", 0.005, "share of requests whose worker leaks")
	perMin := flag.Float64("per-min", 0, "slowleak: leaks per minute (overrides -share)")
	stopAfter := flag.Duration("stop-after", 90*time.Second, "leakstops: when the leak stops")
	conns := flag.Int("conns", 300, "long-lived connections (loadstep, pool, conns)")
	life := flag.Duration("life", 10*time.Minute, "conns: mean lifetime of a connection")
	leakProfile := flag.Duration("leakprofile", 0, "run Go 1.26+'s goroutineleak profile this often (0: never)")
	report := flag.Duration("report", time.Second, "how often to print the figures")
	flag.Parse()

	start := time.Now()
	patience := 50 * time.Millisecond
	rate := alternating(start, *high, *low, *period)
	fixedShare := func() float64 { return *share }
	switch *scenario {
	case "leak":
		go load(rate, fixedShare, leakSend, patience)
	case "slowleak":
		// Leaks per minute, whatever the load: the share follows the current rate.
		go load(rate, func() float64 { return *perMin / 60 / rate() }, leakSend, patience)
	case "leakstops":
		go load(rate, func() float64 {
			if time.Since(start) > *stopAfter {
				return 0
			}
			return *share
		}, leakSend, patience)
	case "mutex":
		go load(rate, fixedShare, leakMutex, patience)
	case "waitgroup":
		neverDone.Add(1)
		go load(rate, fixedShare, leakWaitGroup, patience)
	case "ioleak":
		silent = silentConn()
		go load(rate, fixedShare, leakRead, patience)
	case "loadstep":
		// No leak: light load, then a step up for good and a few hundred long-lived
		// connections opened at once.
		step := time.Now().Add(30 * time.Second)
		go load(func() float64 {
			if time.Now().Before(step) {
				return *low
			}
			return *high
		}, func() float64 { return 0 }, leakSend, patience)
		time.AfterFunc(40*time.Second, func() { openConns(*conns, 0) })
	case "pool":
		// No leak: a pool of connections dialled over two seconds, then steady load.
		go load(rate, func() float64 { return 0 }, leakSend, patience)
		time.AfterFunc(20*time.Second, func() {
			for i := 0; i < 10; i++ {
				openConns(*conns/10, 0)
				time.Sleep(200 * time.Millisecond)
			}
		})
	case "conns":
		// No leak: -conns connections from the start, each living between half and one and a
		// half -life and replaced when it closes, beside bursty load: a large population of
		// long-lived goroutines that comes and goes but does not grow.
		go load(rate, func() float64 { return 0 }, leakSend, patience)
		for i := 0; i < *conns; i++ {
			keepOpen(*life)
		}
	case "timers":
		// No leak: goroutines in select with timers, waking every 30 s, beside bursty load.
		go load(rate, func() float64 { return 0 }, leakSend, patience)
		tickers(*conns, 30*time.Second)
	case "goleak":
		// No load: 50 goroutines leaked on unreachable channels, then the runtime's own
		// leak detection (Go 1.26+) every 2 s, which marks them leaked.
		for i := 0; i < 50; i++ {
			unreachable()
		}
		*leakProfile = 2 * time.Second
	default:
		fmt.Fprintf(os.Stderr, "unknown scenario %q\n", *scenario)
		os.Exit(2)
	}

	if p := pprof.Lookup("goroutineleak"); p != nil && *leakProfile > 0 {
		go func() {
			for range time.Tick(*leakProfile) {
				p.WriteTo(io.Discard, 0)
			}
		}()
	}

	out := json.NewEncoder(os.Stdout)
	for range time.Tick(*report) {
		posMu.Lock()
		line := map[string]interface{}{
			"unix":       float64(time.Now().UnixNano()) / 1e9,
			"scenario":   *scenario,
			"leaked":     leaked.Load(),
			"requests":   requests.Load(),
			"goroutines": runtime.NumGoroutine(),
			"positions":  positions,
		}
		out.Encode(line)
		posMu.Unlock()
	}
}
