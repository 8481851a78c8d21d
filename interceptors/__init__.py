"""Stand-alone grpcio interceptors: concurrency limit, app token, capture, tracing, retry, deadline."""
