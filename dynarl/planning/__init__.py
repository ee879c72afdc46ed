"""Decision-time planning: action-sequence optimisers, MPC, POPLIN-style proposals."""
