"""Reproductions of the characterization study and design-space studies, one module per figure or study."""
