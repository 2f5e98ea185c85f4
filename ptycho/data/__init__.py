"""Dataset files (HDF5 contract), train/test splitting, grouping and streaming."""
