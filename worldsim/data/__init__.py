"""Trajectory datasets: shards on disk, collection, clip sampling for training, Minari interchange."""
