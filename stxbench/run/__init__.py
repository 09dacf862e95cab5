"""One run and its stages: the protocol and the options resolved into a `RunConfig`, the processes,
the CPU pin, training, checkpoints, and the stages themselves (`stxbench.run.stages`)."""
