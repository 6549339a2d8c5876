"""The engine benchmark (``loadtest/bench_engine.py``): raw generate, our server's engines and
``transformers serve``, on one model, driven by one HTTP client."""
