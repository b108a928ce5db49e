"""Physics: geometry, projection (ASTRA), noise and resampling."""
