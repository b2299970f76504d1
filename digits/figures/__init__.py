"""Matplotlib figures drawn without pyplot: the shared drawing helpers (grids, PNG files) and
the pictures of a network's insides that the visualize stage makes.
"""
