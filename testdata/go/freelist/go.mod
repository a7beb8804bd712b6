module gprof.test/freelist

go 1.19
