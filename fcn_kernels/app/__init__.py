"""The application: the `fcn-kernels` command line and the jobs behind it, one module a job. It imports the
library (fcn_kernels), never the reverse; `import fcn_kernels` loads none of it (tests/test_layers.py).

cli           the `fcn-kernels` command line; commands/ holds one module a command
doctor        the self-check (`fcn-kernels doctor`, python -m fcn_kernels.app.doctor)
bench         the FCN-8s head benchmark (`fcn-kernels bench`, benchmarks/)
peers         the peers' table (`fcn-kernels bench --peers`, benchmarks/bench_peers.py)
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
