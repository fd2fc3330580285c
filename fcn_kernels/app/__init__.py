"""The training application behind `fcn-kernels train / eval / demo`, one module a job:

config        every option and default (the parsers are built from it)
distributed   the process group (torchrun) and its collectives
device        device choice and autocast
factory       models, data sets and loaders from a config
checkpoint    checkpoint files: atomic writes, code-free loads
rng           the random streams a checkpoint carries
evaluation    the four metrics over a data set; the eval job
overlay       overlay.png
training      the training loop
"""
