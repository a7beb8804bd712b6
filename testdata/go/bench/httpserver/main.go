// Command httpserver is the benchmark's service under load: every request runs its work in
// a goroutine of its own (as services that fan out do), and one request in -leak-every
// leaves a goroutine behind. It prints its listening address, then its own runtime figures
// as JSON lines, so that the benchmark can compare them with what gprof measures.
package main

import (
	"crypto/sha256"
	"encoding/json"
	"flag"
	"net"
	"net/http"
	"os"
	"runtime"
	"runtime/metrics"
	"sync/atomic"
	"time"
)

var (
	addr      = flag.String("addr", "127.0.0.1:0", "listen address")
	leakEvery = flag.Int64("leak-every", 1000, "leak one goroutine every this many requests (0: never)")
	report    = flag.Duration("report", 100*time.Millisecond, "print the runtime's own figures this often (0: never)")
)

var (
	requests atomic.Int64
	spawned  atomic.Int64
	leaked   atomic.Int64
	never    = make(chan struct{})
)

// handle hashes the request path in a goroutine of its own and answers with the digest.
func handle(w http.ResponseWriter, r *http.Request) {
	n := requests.Add(1)
	if *leakEvery > 0 && n%*leakEvery == 0 {
		leaked.Add(1)
		go func() { <-never }()
	}
	spawned.Add(1)
	done := make(chan [32]byte, 1)
	go func(path string) { done <- sha256.Sum256([]byte(path)) }(r.URL.Path)
	sum := <-done
	w.Header().Set("Content-Type", "text/plain")
	_, _ = w.Write(sum[:8])
}

func main() {
	flag.Parse()
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		panic(err)
	}
	out := json.NewEncoder(os.Stdout)
	_ = out.Encode(map[string]any{"addr": ln.Addr().String(), "version": runtime.Version()})
	if *report > 0 {
		go func() {
			for range time.Tick(*report) {
				_ = out.Encode(map[string]any{
					"unix":          float64(time.Now().UnixNano()) / 1e9,
					"num_goroutine": runtime.NumGoroutine(),
					"requests":      requests.Load(),
					"spawned":       spawned.Load(),
					"leaked":        leaked.Load(),
					// Go 1.26+: every goroutine created, net/http's own included.
					"created_metric": readUint("/sched/goroutines-created:goroutines"),
				})
			}
		}()
	}
	panic(http.Serve(ln, http.HandlerFunc(handle)))
}

// readUint reads a runtime/metrics counter; nil when this Go release does not have it.
func readUint(name string) *uint64 {
	m := []metrics.Sample{{Name: name}}
	metrics.Read(m)
	if m[0].Value.Kind() != metrics.KindUint64 {
		return nil
	}
	v := m[0].Value.Uint64()
	return &v
}
