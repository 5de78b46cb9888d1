"""Stand-in: diffusers.utils helpers the official solvers call."""
import importlib.util
import warnings


def deprecate(*args, standard_warn=True, stacklevel=2, **kwargs):
    if len(args) >= 3:
        warnings.warn(str(args[2]), FutureWarning, stacklevel=stacklevel)


def is_scipy_available():
    return importlib.util.find_spec('scipy') is not None
