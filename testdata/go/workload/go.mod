module gprof.test/workload

go 1.19
