"""The ``unica`` command line: thin click commands over the library (no crypto here)."""
