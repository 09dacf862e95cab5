"""How a sweep's runs are carried out: one after another in this process (serial), in worker
processes on this machine (local), or as SLURM job arrays (slurm). All take resolved run
configs, whatever produced them, and plan dense models first (`plan`); every task keeps a
state file (`tasks`) that ``stxbench sweep status`` reads (`status`)."""
