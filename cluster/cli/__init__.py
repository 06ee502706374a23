"""The `prelabel` command line."""
