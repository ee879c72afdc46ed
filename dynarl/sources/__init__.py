"""Data sources: the env collector, model rollouts and datasets that feed an algorithm's buffers."""
