module gprof.test/scenarios

go 1.19
