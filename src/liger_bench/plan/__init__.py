"""Plan: the training settings, the grid of runs and every check that needs no GPU, done before any is asked for.

prepare_grid runs this stage; the Liger adapter lives here because prepare_grid already applies it
to a meta-device model to check the kernel flags against the architecture, and training reuses it.
It imports the shared top-level modules and inputs.
"""
