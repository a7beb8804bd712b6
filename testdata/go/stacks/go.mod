module gprof.test/stacks

go 1.19
