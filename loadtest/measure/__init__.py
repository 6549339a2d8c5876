"""What the load test computes from its records: latencies, objectives, cost."""
