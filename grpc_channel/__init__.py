"""grpc-channel: grpc-go style options and a Dapr-style app channel for Python gRPC."""
