module gprof.test/churn

go 1.19
