"""Benchmarks: end-to-end latency, requests per run, in-worker overhead, throughput and memory."""
