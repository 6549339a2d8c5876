"""The load tester: ``python loadtest/run.py`` measures cold start, TTFT, latency, tokens/s and cost.

Every provider is measured the same way; docs/load-testing.md defines each number.
"""
