module gprof.test/stackgrow

go 1.19
