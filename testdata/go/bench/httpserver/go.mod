module gprof.test/httpserver

go 1.19
