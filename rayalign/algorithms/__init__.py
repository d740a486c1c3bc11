"""The math of each method as pure torch functions: no Ray, no I/O, no model loading."""
