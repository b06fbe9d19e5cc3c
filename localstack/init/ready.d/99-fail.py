raise RuntimeError("deliberate test failure")
