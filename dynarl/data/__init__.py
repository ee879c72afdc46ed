from dynarl.data.replay import ReplayBuffer

__all__ = ["ReplayBuffer"]
