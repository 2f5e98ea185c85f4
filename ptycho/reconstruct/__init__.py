"""Reconstruction: network inference + stitching, and the iterative (pty-chi) arm."""
