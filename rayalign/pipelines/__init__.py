"""Each method as one function that reads top to bottom, with the distribution inside workers."""
