"""Measuring on a shared CPU: allocator state, drift references, sentinels, and the setup that uses them."""
