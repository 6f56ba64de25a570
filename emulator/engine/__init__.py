"""The SimPy engine: scenarios, arrivals, devices, policies, metrics."""
