"""HTTP routes, one module per endpoint family. None of them imports torch."""
