"""What the benchmarks share: models, servers, measurement, summaries and tables."""
