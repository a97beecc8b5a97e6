module hellod.bench/hello-go

go 1.19
