module gprof.test/crowd

go 1.19
