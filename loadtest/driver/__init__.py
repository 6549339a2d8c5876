"""Running a load test: the server it spawns, the warm-up, the loop that sends, whole experiments."""
