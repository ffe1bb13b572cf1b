"""The host and the gRPC edge: worlds (engine + clock + hub + journal) served over grpclib."""
