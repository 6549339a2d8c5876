"""What the load test sends: arrival times, prompts and their lengths."""
