"""Provider shims: each only imports the service and mounts it (docs/deploying.md)."""
