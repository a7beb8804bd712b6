//go:build cgo

package main

// #include <unistd.h>
import "C"

// With cgo, a goroutine calls into C now and then (cgocall, external linking).
func init() {
	cgoCall = func() int64 { return int64(C.getpid()) }
}
