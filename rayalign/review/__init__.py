"""Human review of synthetic data: a local web page where a person accepts, edits, rejects or
answers generated items (`rayalign review serve`), and the import that turns those decisions
into an SFT or preference dataset with provenance (`rayalign review import`)."""
