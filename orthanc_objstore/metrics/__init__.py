"""The plugin's metrics: a small registry of counters and gauges, and the area wrapper that counts every operation."""
