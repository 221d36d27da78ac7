"""moodbot benchmarks: measurement helpers (:mod:`bench.measure`) and baselines (:mod:`bench.baselines`)."""
