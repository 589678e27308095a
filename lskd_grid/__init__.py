"""A recipe's grid: its settings, the runs and stages it plans, and the executors that run them."""
