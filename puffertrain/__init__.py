"""puffertrain: PPO that learns, runs fast, and never loses a run."""

__version__ = "0.1.0"
