"""The load tester: ``python -m loadtest`` measures cold start, TTFT, latency, tokens/s and cost.

Every provider is measured the same way; docs/load-testing.md defines each number.
"""
