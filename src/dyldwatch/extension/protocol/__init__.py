"""osquery's extension protocol: our IDL and the Python bindings generated from it (see Makefile `thrift`)."""
