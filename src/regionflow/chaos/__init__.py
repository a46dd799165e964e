"""Chaos: fault injection inside a region, and Chaos Toolkit actions and probes that drive it."""
