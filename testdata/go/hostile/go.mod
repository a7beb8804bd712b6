module gprof.test/hostile

go 1.19
