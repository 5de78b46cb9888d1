"""Stand-in for the parts of diffusers the official Wan2.2 code imports (see ../README.md)."""
