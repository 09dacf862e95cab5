"""Model families. The host registers the built-in ones through `stxbench.models.builtin`."""
