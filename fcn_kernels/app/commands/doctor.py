"""`fcn-kernels doctor`: what was built, and every available backend checked against the reference on every
device present (also `python -m fcn_kernels.app.doctor`)."""

NAME = "doctor"
HELP = "check the build: every available backend against the float64 reference, on every device present"
DESCRIPTION = (
    "Prints what was built (torch, CUDA and Triton versions, kernels, CUDA architectures, GPUs), "
    "then checks both ops forward and backward on every available backend and device against the "
    "float64 reference (PASS or FAIL per line), then times the FCN-8s head once per backend. "
    "Exits 0 only if every check passes. With TRITON_INTERPRET=1, Triton is checked on CPU too."
)


def add_arguments(p):
    from ..doctor import add_arguments as doctor_arguments

    doctor_arguments(p)


def run(args):
    from ..doctor import doctor

    return 0 if doctor(args.json, jsonl_path=args.jsonl)["passed"] else 1
