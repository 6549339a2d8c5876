"""The load tester: ``python loadtest/run.py`` measures cold start, TTFT, latency, tokens/s and cost.

Every provider is measured the same way; README "Load testing" defines each number.
"""
