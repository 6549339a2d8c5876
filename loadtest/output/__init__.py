"""What a run leaves behind: results.json, report.md, plots, the console summary."""
