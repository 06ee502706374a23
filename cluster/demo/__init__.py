"""`prelabel demo`: the main job on real data, from a fresh machine to three exports."""
