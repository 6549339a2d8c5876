"""The engine benchmark (``python -m loadtest.bench engine``): raw generate, our server's engines and
``transformers serve``, on one model, driven by one HTTP client."""
