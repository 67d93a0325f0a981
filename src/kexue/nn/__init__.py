"""Building blocks in pure torch: activations, masks, attention. Imports nothing else of kexue."""
