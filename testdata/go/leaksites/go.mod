module gprof.test/leaksites

go 1.19
