"""Contract suites every connector's test module inherits, supplying only how to build its backend."""
