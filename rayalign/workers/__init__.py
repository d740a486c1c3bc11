"""Ray actors, one class per role, each a thin shell around an engine."""
